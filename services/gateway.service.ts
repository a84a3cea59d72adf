import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Context, Service, ServiceSchema } from "moleculer";
import ApiGateway, { type ApiSettingsSchema } from "moleculer-web";
import { runtimeOf } from "../lib/runtime";
import { HostedPaymentsDisabledError } from "../lib/errors";
import { projectRoot } from "../lib/paths";
import { checkReadiness } from "../lib/health";
import { ApiError, toHttpError } from "../lib/api/errors";
import { devSignIn, tokenOf, verifyToken, type ApiUser } from "../lib/api/auth";
import { signToken } from "../lib/auth";
import { nodesReadiness, outboxBacklogs, pendingDeadLetters, replayDeadLetter } from "../lib/ops";
import { API_ROUTES, ROUTES_BY_KEY, routeKey, type ApiRoute } from "../lib/api/routes";
import { MemoryRateStore, RedisRateStore, checkRate, type RateStore } from "../lib/api/rate-limit";
import { DOCS_INIT_SCRIPT, buildOpenApi, renderDocsPage } from "../lib/api/openapi";
import { badText, clientErrorAnswer, rawResponse, redactUrl } from "../lib/api/input";
import { readWebhook } from "../lib/api/webhook";
import { RecentOrders } from "../lib/api/recent-orders";
import { streamMove, type OrderView, type StatusChange, type StatusStep } from "../lib/api/order-view";
import { SIGNATURE_HEADER } from "../lib/webhook-signature";

type Req = IncomingMessage & { $ctx: Context<any, any>; $params: any; $spec?: ApiRoute; $startTime?: number[]; query?: Record<string, unknown>; $secretQuery?: URLSearchParams; originalUrl?: string };
type Res = ServerResponse;

interface StreamSubscriber {
	res: Res;
	/** The order's history as sent so far. */
	sent: StatusStep[];
	/** Its changes, handled one after another in the order they were announced. */
	chain: Promise<void>;
	/** The client left, or the first read failed: nothing more is written. */
	closed: boolean;
	heartbeat?: NodeJS.Timeout;
}

type GatewayThis = Service<ApiSettingsSchema> & {
	server: import("node:http").Server;
	rateStore: RateStore;
	streams: Map<string, Set<StreamSubscriber>>;
	recentOrders: RecentOrders;
	listeningPort(): number;
	sendJson(req: Req, res: Res, status: number, body: unknown, headers?: Record<string, string>): void;
	sendError(req: Req, res: Res, err: unknown): void;
	logRequestLine(req: Req, status: number): void;
	pushChange(change: StatusChange, sub: StreamSubscriber): Promise<void>;
	closeStreams(): void;
};

/** Headers every answer carries: no sniffing, no framing, no caching of personal data. */
const SECURITY_HEADERS: Record<string, string> = {
	"X-Content-Type-Options": "nosniff",
	"X-Frame-Options": "DENY",
	"Referrer-Policy": "no-referrer",
	"Cache-Control": "no-store",
	"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
	"Cross-Origin-Resource-Policy": "same-origin",
};
/** The reference page runs Swagger UI's own script from this server and nothing else. */
const DOCS_CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; frame-ancestors 'none'";
const SWAGGER_UI_DIR = path.dirname(require.resolve("swagger-ui-dist/package.json"));
const DOCS_ASSETS: Record<string, string> = { "swagger-ui.css": "text/css; charset=utf-8", "swagger-ui-bundle.js": "text/javascript; charset=utf-8", "init.js": "text/javascript; charset=utf-8" };
const docsCache = new Map<string, Buffer>();
/** One of the three files the reference page loads (read once), or undefined. */
function docsAsset(file: string): { type: string; body: Buffer } | undefined {
	const type = DOCS_ASSETS[file];
	if (!type) return undefined;
	let body = docsCache.get(file);
	if (!body) {
		body = file === "init.js" ? Buffer.from(DOCS_INIT_SCRIPT) : readFileSync(path.join(SWAGGER_UI_DIR, file));
		docsCache.set(file, body);
	}
	return { type, body };
}
/**
 * The web front (web/, built into web/dist): a single-page app from this server only. Its CSP
 * allows its own scripts, styles, images and API calls and nothing else; hashed assets are
 * cached for a year, the page itself is revalidated on every load.
 */
const WEB_DIST = path.join(projectRoot(), "web", "dist");
const WEB_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
function webHeaders(res: ServerResponse, file: string) {
	for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
	res.setHeader("Content-Security-Policy", WEB_CSP);
	res.setHeader("Cache-Control", file.includes(`${path.sep}assets${path.sep}`) ? "public, max-age=31536000, immutable" : "no-cache");
}

/** The media types parsed as JSON: application/json and every +json type (merge patches, …). */
const JSON_TYPES = ["application/json", "application/*+json"];
/** Orders answered lately whose streams start without a read (RecentOrders): 30 s of checkouts, at most 10,000 orders. */
const RECENT_ORDERS_MAX = 10_000;
const RECENT_ORDERS_TTL_MS = 30_000;
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const WRITE_METHODS = new Set(["POST", "PUT", "PATCH"]);
const ms = (start?: number[]) => {
	if (!start) return 0;
	const [s, ns] = process.hrtime(start as [number, number]);
	return Math.round(s * 1e3 + ns / 1e6);
};

/** moleculer-web aliases for the contract's routes, each to its action (or a gateway handler), and the API's own document. */
const apiAliases: Record<string, unknown> = Object.fromEntries([
	[
		"GET /openapi.json",
		function (this: GatewayThis, req: Req, res: Res) {
			this.sendJson(req, res, 200, buildOpenApi(this.broker));
		},
	],
	[
		"GET /docs",
		function (this: GatewayThis, req: Req, res: Res) {
			res.writeHead(200, { ...SECURITY_HEADERS, "Content-Security-Policy": DOCS_CSP, "Content-Type": "text/html; charset=utf-8" });
			res.end(renderDocsPage(buildOpenApi(this.broker)));
			this.logRequestLine(req, 200);
		},
	],
	[
		"GET /docs/assets/:file",
		function (this: GatewayThis, req: Req, res: Res) {
			const file = (req.$params.params as { file?: string } | undefined)?.file ?? "";
			const asset = docsAsset(file);
			if (!asset) return this.sendJson(req, res, 404, { error: { code: "NOT_FOUND", message: "No such asset" } });
			// The versioned package's files: cached a day (they change only with an upgrade).
			res.writeHead(200, { ...SECURITY_HEADERS, "Content-Type": asset.type, "Cache-Control": "public, max-age=86400" });
			res.end(asset.body);
			this.logRequestLine(req, 200);
		},
	],
	...API_ROUTES.map(r => [
		routeKey(r.method, r.path),
		r.action === "gateway.orderStream"
			? function (this: GatewayThis, req: Req, res: Res, next: (err?: unknown) => void) {
					return orderStream.call(this, req, res, next);
				}
			: r.action,
	]),
]);

/**
 * SSE: the order at once, then one `status` event per transition in order, until the client leaves.
 * The order is read once, as the stream opens; each transition after comes with the order as it
 * left it in the order service's broadcast (streamMove), so it is pushed without another read
 * (the stream's reads were a ninth of the embedded database's work). Subscribed before the read, so
 * a transition announced during it is not missed.
 */
async function orderStream(this: GatewayThis, req: Req, res: Res, next: (err?: unknown) => void): Promise<void> {
	const { orderId, userId } = req.$params as { orderId: string; userId?: string };
	const sub: StreamSubscriber = { res, sent: [], chain: Promise.resolve(), closed: false };
	const subs = this.streams.get(orderId) ?? new Set<StreamSubscriber>();
	subs.add(sub);
	this.streams.set(orderId, subs);
	let open = false;
	const leave = () => {
		sub.closed = true;
		clearInterval(sub.heartbeat);
		subs.delete(sub);
		if (subs.size === 0 && this.streams.get(orderId) === subs) this.streams.delete(orderId);
	};
	req.on("close", () => {
		leave();
		if (open) this.logRequestLine(req, 200);
	});
	const first = (async () => {
		const order = this.recentOrders.snapshot(orderId, userId) ?? (await req.$ctx.call<OrderView, Record<string, unknown>>("order.get", { orderId, userId }));
		if (sub.closed) return;
		res.writeHead(200, {
			...SECURITY_HEADERS,
			"Content-Type": "text/event-stream; charset=utf-8",
			Connection: "keep-alive",
			"X-Accel-Buffering": "no",
			"X-Request-ID": req.$ctx.requestID ?? "",
		});
		res.write(`retry: 2000\nevent: order\ndata: ${JSON.stringify(order)}\n\n`);
		sub.sent = order.statusHistory;
		sub.heartbeat = setInterval(() => res.write(": keep-alive\n\n"), 15000);
		open = true;
	})();
	sub.chain = first.catch(() => undefined);
	try {
		await first;
	} catch (err) {
		leave();
		next(err);
	}
}

/** The raw body, up to `limit` bytes (a webhook's signature covers its exact bytes). */
function rawBody(req: IncomingMessage, limit: number): Promise<Buffer> {
	return new Promise((resolve, reject) => {
		const chunks: Buffer[] = [];
		let size = 0;
		req.on("data", (chunk: Buffer) => {
			size += chunk.length;
			if (size > limit) {
				reject(new ApiError(413, "PAYLOAD_TOO_LARGE", "The body is too large"));
				req.destroy();
			} else chunks.push(chunk);
		});
		req.on("end", () => resolve(Buffer.concat(chunks)));
		req.on("error", reject);
	});
}

/**
 * POST /api/webhooks/payment-gateway: the gateway's signed events (no JWT; the signature over the
 * raw body with PAYMENT_WEBHOOK_SECRET authenticates it). Answered 200 once recorded with its
 * effect; any other answer makes the gateway send it again.
 */
async function paymentWebhook(this: GatewayThis, req: Req, res: Res) {
	try {
		const { config } = runtimeOf(this.broker);
		const raw = await rawBody(req, config.bodyLimitBytes);
		if (!config.paymentWebhookSecret) throw new HostedPaymentsDisabledError();
		const header = req.headers[SIGNATURE_HEADER.toLowerCase()];
		const read = readWebhook(typeof header === "string" ? header : undefined, raw, config.paymentWebhookSecret);
		if (!read.ok) return this.sendJson(req, res, read.status, read.body);
		const answer = await req.$ctx.call("payment.webhook", read.event);
		this.sendJson(req, res, 200, answer);
	} catch (err) {
		this.sendError(req, res, err);
	}
}

/**
 * The HTTP edge (moleculer-web): every route of SPEC section 4 and nothing else. A declarative table
 * (lib/api/routes.ts) gives each route its action, who may call it and which request fields reach
 * the service; authentication, rate limits, content checks and the one error shape live here.
 */
/**
 * Settings moleculer-web reads while it builds its routes in its own `created`: from the node's
 * configuration. Listed after ApiGateway, so its `created` runs first (mixins merge right to left).
 */
const ConfiguredFromRuntime: Partial<ServiceSchema<ApiSettingsSchema, any, any, any>> = {
	created(this: GatewayThis) {
		const { config } = runtimeOf(this.broker);
		this.settings.port = config.port;
		if (config.corsOrigins) {
			this.settings.cors = {
				origin: config.corsOrigins.includes("*") ? "*" : config.corsOrigins,
				methods: ["GET", "POST", "PUT", "PATCH", "OPTIONS"],
				allowedHeaders: ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
				exposedHeaders: ["X-Request-ID", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"],
				maxAge: 600,
			};
		}
		const api = (this.settings.routes ?? []).find(r => r.aliases === apiAliases);
		// Every JSON media type (application/merge-patch+json, …) is parsed as JSON; gzip, deflate and
		// br bodies are decoded, the limit applying to the decoded body.
		if (api) api.bodyParsers = { json: { strict: true, limit: config.bodyLimitBytes, type: JSON_TYPES } };
		this.settings.requestTimeout = config.httpRequestTimeoutMs;
		if (existsSync(path.join(WEB_DIST, "index.html"))) this.settings.assets = { folder: WEB_DIST, options: { index: "index.html", dotfiles: "ignore", setHeaders: webHeaders } };
		else this.logger.warn(`The web front is not built (${WEB_DIST}): \`npm run build:web\`; the API is served as usual.`);
	},
};

// moleculer-web's published types are narrower than what it calls (handlers' `this`, request fields).
const GatewayService: ServiceSchema<ApiSettingsSchema, any, any, any> = {
	name: "gateway",
	mixins: [ApiGateway, ConfiguredFromRuntime],
	settings: {
		port: 3000,
		ip: "0.0.0.0",
		logRequest: null,
		logResponse: null,
		// The client's X-Request-ID (if sane) becomes the Moleculer request id, hence the trace id.
		rootCallOptions: function (options: Record<string, unknown>, req: IncomingMessage) {
			const given = req.headers["x-request-id"];
			options.requestID = typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
			// Never retry the HTTP handling itself: a retry re-reads a request moleculer-web already
			// consumed (and whose URL it rewrote) and answers 404. The calls it makes keep their own policy.
			options.retries = 0;
		} as unknown as ApiSettingsSchema["rootCallOptions"],
		routes: ([
			{
				path: "/health",
				mappingPolicy: "restrict",
				bodyParsers: false,
				aliases: {
					"GET live"(this: GatewayThis, req: Req, res: Res) {
						this.sendJson(req, res, 200, { status: "ok" });
					},
					async "GET ready"(this: GatewayThis, req: Req, res: Res) {
						const readiness = await checkReadiness(this.broker);
						this.sendJson(req, res, readiness.status === "ok" ? 200 : 503, readiness);
					},
				},
			},
			{
				path: "/",
				mappingPolicy: "restrict",
				bodyParsers: false,
				aliases: {
					"GET metrics"(this: GatewayThis, req: Req, res: Res) {
						const reporter = (this.broker.metrics as any).reporter?.find((r: any) => typeof r.generatePrometheusResponse === "function");
						if (!reporter) return this.sendJson(req, res, 503, { error: { code: "METRICS_DISABLED", message: "Metrics are off on this node (METRICS_PORT=0)" } });
						res.writeHead(200, { ...SECURITY_HEADERS, "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
						res.end(reporter.generatePrometheusResponse());
						this.logRequestLine(req, 200);
					},
				},
			},
			{
				// Before /api: its body is read raw, for the signature.
				path: "/api/webhooks",
				mappingPolicy: "restrict",
				bodyParsers: false,
				aliases: {
					"POST payment-gateway"(this: GatewayThis, req: Req, res: Res) {
						return paymentWebhook.call(this, req, res);
					},
				},
			},
			{
				path: "/api",
				mappingPolicy: "restrict",
				mergeParams: false,
				aliases: apiAliases,
				bodyParsers: { json: { strict: true, limit: 65536, type: JSON_TYPES } },

				async onBeforeCall(this: GatewayThis, ctx: Context<any, any>, _route: unknown, req: Req, res: Res, alias: { method: string; path: string }) {
					for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
					// moleculer-web keeps the alias path without its leading slash.
					const spec = ROUTES_BY_KEY.get(routeKey(alias.method, `/${alias.path.replace(/^\/+/, "")}`));
					if (!spec) return; // the API's own document: public, no parameters
					req.$spec = spec;
					const { config } = runtimeOf(this.broker);

					let user: ApiUser | undefined;
					if (spec.access !== "public") {
						const queryToken = spec.action === "gateway.orderStream" ? { access_token: req.$secretQuery?.get("access_token") ?? undefined } : undefined;
						user = verifyToken(tokenOf(req.headers, queryToken), config.jwtSecret);
						if (spec.access === "admin" && user.role !== "admin") throw new ApiError(403, "FORBIDDEN", "This needs the admin role");
					}
					ctx.meta.user = user;

					const rate = await checkRate(this.rateStore, user ? `u:${user.sub}` : `ip:${req.socket.remoteAddress}`, config.rateLimit, config.rateLimitWindowMs);
					res.setHeader("X-RateLimit-Limit", String(rate.limit));
					res.setHeader("X-RateLimit-Remaining", String(rate.remaining));
					if (!rate.allowed) {
						res.setHeader("Retry-After", String(rate.retryAfterSeconds));
						throw new ApiError(429, "RATE_LIMITED", `Too many requests; try again in ${rate.retryAfterSeconds} s`);
					}

					const hasBody = Number(req.headers["content-length"] ?? 0) > 0 || req.headers["transfer-encoding"] !== undefined;
					if (WRITE_METHODS.has(req.method ?? "") && hasBody && !/^application\/(.+\+)?json\b/i.test(req.headers["content-type"] ?? "")) {
						throw new ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "Send the body as application/json");
					}
					const body = req.$params.body;
					if (spec.body && body !== undefined && (typeof body !== "object" || body === null || Array.isArray(body))) {
						throw new ApiError(400, "VALIDATION_ERROR", "The body must be a JSON object");
					}
					const badField = badText(body) ?? badText(req.$params.query) ?? badText(req.$params.params);
					if (badField) throw new ApiError(400, "VALIDATION_ERROR", "The request is not valid", { fields: [badField] });
					req.$params = spec.params({
						body: (body as Record<string, unknown>) ?? {},
						query: (req.$params.query as Record<string, unknown>) ?? {},
						params: (req.$params.params as Record<string, string>) ?? {},
						headers: req.headers,
						user,
					});
				},

				onAfterCall(this: GatewayThis, ctx: Context<any, any>, _route: unknown, req: Req, _res: Res, data: any) {
					let status = req.$spec?.status ?? 200;
					if (data && typeof data === "object" && data.replayed === true) {
						// The same Idempotency-Key and body: the first order, answered 200.
						status = 200;
						delete data.replayed;
					}
					ctx.meta.$statusCode = status;
					if (req.$spec?.action === "order.create") this.recentOrders.remember(data);
					// A created resource's address: its own GET route if it has one, else its collection (a
					// resource under another, such as an order's payment session, carries its own `url`).
					if (status === 201 && req.$spec && !req.$spec.path.includes(":")) {
						const item = typeof data?.id === "string" && ROUTES_BY_KEY.has(routeKey("GET", `${req.$spec.path}/:id`));
						ctx.meta.$location = `/api${req.$spec.path}${item ? `/${data.id}` : ""}`;
					}
					this.logRequestLine(req, status);
					return data;
				},
			},
		] as unknown) as ApiSettingsSchema["routes"],
		onError: function (this: GatewayThis, req: Req, res: Res, err: Error) {
			this.sendError(req, res, err);
		} as unknown as ApiSettingsSchema["onError"],
	},

	actions: {
		/** The console's operator views (admin routes): what the REPL's health, deadletters, replay and backlog show. */
		adminNodes(this: GatewayThis) {
			return nodesReadiness(this.broker);
		},
		adminDeadLetters(this: GatewayThis) {
			return pendingDeadLetters(this.broker);
		},
		adminReplay: {
			params: { service: { type: "string", pattern: /^[a-z]+$/, max: 50 }, id: { type: "number", integer: true, positive: true, convert: true } },
			handler(this: GatewayThis, ctx: Context<{ service: string; id: number }>) {
				return replayDeadLetter(this.broker, ctx.params.service, ctx.params.id);
			},
		},
		adminOutbox(this: GatewayThis) {
			return outboxBacklogs(this.broker);
		},

		/** POST /api/dev/token: outside production, with the development secret, a token for anyone (12 h). */
		devToken: {
			params: { sub: { type: "string", min: 1, max: 100, pattern: /^[A-Za-z0-9._@-]+$/ }, role: { type: "enum", values: ["customer", "admin"], optional: true, default: "customer" } },
			handler(this: GatewayThis, ctx: Context<{ sub: string; role: "customer" | "admin" }>) {
				const { config } = runtimeOf(this.broker);
				if (!devSignIn(config)) throw new ApiError(404, "ROUTE_NOT_FOUND", "No such route");
				const expiresIn = 12 * 3600;
				return { token: signToken({ sub: ctx.params.sub, role: ctx.params.role }, config.jwtSecret, expiresIn), sub: ctx.params.sub, role: ctx.params.role, expiresIn };
			},
		},

		/** GET /orders/:id/timeline: the order's events, for its owner or an admin. */
		orderTimeline: {
			params: { orderId: { type: "uuid" }, userId: { type: "string", optional: true } },
			async handler(this: GatewayThis, ctx: Context<{ orderId: string; userId?: string }>) {
				await ctx.call("order.get", ctx.params); // 404 unless it is the caller's
				return ctx.call("audit.timeline", { orderId: ctx.params.orderId });
			},
		},
	},

	events: {
		/** Broadcast by the order service on every transition, on whichever node it runs. */
		"order.status-changed"(this: GatewayThis, ctx: Context<StatusChange>) {
			this.recentOrders.apply(ctx.params);
			const subs = this.streams.get(ctx.params.orderId);
			if (!subs) return;
			for (const sub of subs) sub.chain = sub.chain.then(() => this.pushChange(ctx.params, sub));
		},
		/** A node about to stop ends its streams, so in-flight tracking does not wait on them. */
		"node.shutting-down"(this: GatewayThis) {
			this.closeStreams();
		},
	},

	methods: {
		/**
		 * Every request enters here. A credential in the query (`?access_token=`, what a browser's
		 * EventSource must use) is taken out of the URL first, so that no log line, span name or
		 * trace tag, all made from the URL, ever holds it.
		 */
		httpHandler(this: GatewayThis, req: Req, res: Res, next?: unknown) {
			if (req.url && req.url.includes("?")) {
				const clean = redactUrl(req.url);
				if (clean !== req.url) {
					req.$secretQuery = new URL(req.url, "http://x").searchParams;
					req.url = clean;
				}
			}
			return (ApiGateway.methods!.httpHandler as (this: unknown, ...a: unknown[]) => unknown).call(this, req, res, next);
		},

		/** moleculer-web's server, with the edge's timeouts and its answer to what Node's parser refuses. */
		createServer(this: GatewayThis) {
			(ApiGateway.methods!.createServer as (this: unknown) => void).call(this);
			const { config } = runtimeOf(this.broker);
			const server = this.server as typeof this.server & { connectionsCheckingInterval: number };
			server.headersTimeout = config.httpHeadersTimeoutMs;
			// Node checks those timeouts every 30 s by default: a stalled client would hold on that long.
			server.connectionsCheckingInterval = Math.min(1000, config.httpHeadersTimeoutMs);
			// Headers too large, a request not arriving in time, not HTTP: the error shape too, not a bare status line.
			server.on("clientError", (err: NodeJS.ErrnoException, socket: import("node:stream").Duplex) => {
				if (!socket.writable) return socket.destroy();
				const { status, body } = clientErrorAnswer(err.code);
				// Closed, not half-closed: a request the handler is still reading must see its end.
				socket.end(rawResponse(status, body), () => socket.destroy());
			});
		},

		listeningPort(this: GatewayThis): number {
			return (this.server.address() as AddressInfo).port;
		},

		sendJson(this: GatewayThis, req: Req, res: Res, status: number, body: unknown, headers: Record<string, string> = {}) {
			res.writeHead(status, { ...SECURITY_HEADERS, "Content-Type": "application/json; charset=utf-8", "X-Request-ID": req.$ctx?.requestID ?? "", ...headers });
			res.end(JSON.stringify(body));
			this.logRequestLine(req, status);
		},

		/** Any error as the contract's error answer (a fault of ours logged with the request id, never shown). */
		sendError(this: GatewayThis, req: Req, res: Res, err: unknown) {
			const { status, body, internal } = toHttpError(err);
			if (internal) this.logger.error(`Request ${req.$ctx?.requestID} failed:`, err);
			if (res.headersSent) {
				res.end();
				return;
			}
			this.sendJson(req, res, status, body);
		},

		logRequestLine(this: GatewayThis, req: Req, status: number) {
			const user = req.$ctx?.meta?.user as ApiUser | undefined;
			this.logger.info(`${req.method} ${req.originalUrl ?? req.url} ${status} ${ms(req.$startTime)}ms req=${req.$ctx?.requestID ?? "-"}${user ? ` user=${user.sub}` : ""}`);
		},

		/** One announced transition on one stream: skipped, pushed as announced, or read (streamMove). */
		async pushChange(this: GatewayThis, change: StatusChange, sub: StreamSubscriber) {
			const move = sub.closed ? "skip" : streamMove(sub.sent, change);
			if (move === "skip") return;
			try {
				const order = move === "push" ? { ...change.order, statusHistory: [...sub.sent, change.step] } : await this.broker.call<OrderView, Record<string, unknown>>("order.get", { orderId: change.orderId });
				if (sub.closed) return;
				for (const step of order.statusHistory.slice(sub.sent.length)) {
					sub.res.write(`event: status\ndata: ${JSON.stringify({ ...step, order })}\n\n`);
				}
				if (order.statusHistory.length > sub.sent.length) sub.sent = order.statusHistory;
			} catch (err) {
				this.logger.warn(`Order stream ${change.orderId}: ${(err as Error).message}`);
			}
		},

		closeStreams(this: GatewayThis) {
			for (const subs of this.streams.values()) {
				for (const sub of subs) {
					sub.closed = true;
					sub.res.end();
				}
			}
			this.streams.clear();
		},
	},

	created(this: GatewayThis) {
		const runtime = runtimeOf(this.broker);
		const redis = runtime.redis();
		this.rateStore = redis ? new RedisRateStore(redis, `${runtime.config.namespace}:rate:`) : new MemoryRateStore();
		this.streams = new Map();
		this.recentOrders = new RecentOrders(RECENT_ORDERS_MAX, RECENT_ORDERS_TTL_MS);
	},

	stopped(this: GatewayThis) {
		this.closeStreams();
		// The broker already waited (request tracking) for the requests it accepted: what is still
		// connected now is idle, or a client that stalled mid-request. Neither holds the stop.
		this.server.closeAllConnections();
	},
};

export default GatewayService;
