/**
 * A Stripe-like card payment gateway for development and tests (SPEC section 6): a real HTTP
 * server with test tokens, idempotency keys, refunds and a charge listing, and the hosted side of
 * Stripe Checkout (sessions, the customer's payment page, signed webhooks).
 *
 *   POST /charges  {amount, currency, token}   Idempotency-Key required
 *   POST /refunds  {charge, amount?}           Idempotency-Key required
 *   GET  /charges                              every charge and its refunds
 *   POST /checkout/sessions {amount, currency, success_url, cancel_url, expires_at, client_reference_id}
 *                                              Idempotency-Key required; 201 the session
 *   GET  /checkout/sessions/:id                the session (status open|complete|expired)
 *   POST /checkout/sessions/:id/expire         Idempotency-Key required; an open session expires
 *   GET  /checkout/:id                         the customer's payment page (HTML)
 *   POST /checkout/:id/pay   card=<token>      pays: 303 to the success URL; a decline stays on the page
 *
 * Webhooks (`checkout.session.completed`, `checkout.session.expired`) go to the configured URL,
 * signed (lib/webhook-signature.ts), and are retried with backoff until answered 2xx.
 *
 * Tokens: tok_visa authorizes; tok_chargeDeclined → 402 card_declined; tok_insufficientFunds →
 * 402 insufficient_funds; tok_flaky → 503 twice per key, then authorizes; tok_timeout never
 * answers; tok_refundFail authorizes but its refunds answer 503; tok_slow charges at once but holds
 * every answer for its key until 2.5 s after the first request (a charge the client may give up on).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createHash, randomBytes } from "node:crypto";
import { SIGNATURE_HEADER, signPayload } from "./webhook-signature";
import { escapeHtml } from "./html";

interface Charge {
	id: string;
	amount: number;
	currency: string;
	token: string;
	status: "succeeded";
	refunded: number;
	idempotencyKey: string;
	/** The hosted session it paid, if any. */
	sessionId?: string;
	createdAt: string;
	refunds: Array<{ id: string; amount: number; idempotencyKey: string }>;
}

/** A Stripe Checkout session, as the gateway sends it (snake_case, unix seconds). */
export interface WireSession {
	id: string;
	object: "checkout.session";
	url: string;
	status: "open" | "complete" | "expired";
	payment_status: "unpaid" | "paid";
	amount_total: number;
	currency: string;
	success_url: string;
	cancel_url: string;
	expires_at: number;
	client_reference_id: string | null;
	charge: string | null;
	/** The last decline on the page, for the customer to read. */
	last_error: string | null;
	created: number;
}

export interface WebhookDelivery {
	event: { id: string; type: string; created: number; data: { object: WireSession } };
	attempts: number;
	status: "pending" | "delivered";
	lastStatus?: number;
}

interface Stored {
	fingerprint: string;
	status: number;
	body: unknown;
}

export interface MockGatewayOptions {
	port?: number;
	host?: string;
	/** Its address as customers' browsers reach it (the hosted pages' URLs), when not where it listens. */
	publicUrl?: string;
	/** Where webhooks go (asked at each delivery), and the secret they are signed with (see also `configureWebhooks`). */
	webhookUrl?: string | (() => string);
	webhookSecret?: string;
	/** First retry delay of a webhook not answered 2xx (doubling, at most 30 s). */
	webhookRetryBaseMs?: number;
}

export interface MockGateway {
	url: string;
	charges(): Charge[];
	/** Every POST received, in order: how often a key was tried. */
	requests(): Array<{ path: string; key: string }>;
	sessions(): WireSession[];
	/** Every webhook event sent or waiting, with its attempts. */
	webhooks(): WebhookDelivery[];
	configureWebhooks(url: string | (() => string), secret: string): void;
	/** Holds webhooks (they queue) until `releaseWebhooks`: tests order them against other calls. */
	holdWebhooks(): void;
	releaseWebhooks(): void;
	close(): Promise<void>;
}

const id = (prefix: string) => `${prefix}_${randomBytes(12).toString("hex")}`;
const fingerprint = (body: unknown) => createHash("sha256").update(JSON.stringify(body)).digest("hex");
const nowS = () => Math.floor(Date.now() / 1000);
/** Where a paid session sends the customer: its success URL with the session id filled in. */
const successUrlOf = (s: WireSession) => s.success_url.replace("{SESSION_ID}", encodeURIComponent(s.id));
const isWebUrl = (u: unknown) => {
	try {
		return typeof u === "string" && ["http:", "https:"].includes(new URL(u).protocol);
	} catch {
		return false;
	}
};
/** The cards the payment page offers (SPEC section 6's test tokens with a card's outcome). */
const PAGE_CARDS: Array<[string, string]> = [
	["tok_visa", "Visa 4242 — succeeds"],
	["tok_chargeDeclined", "Card 0002 — declined"],
	["tok_insufficientFunds", "Card 9995 — insufficient funds"],
];
const PAGE_CSS = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}fieldset{border:1px solid #ccc;border-radius:6px}label{display:block;margin:.4rem 0}button,a.button{font:inherit;padding:.5rem 1rem;margin-right:.5rem}.error{color:#b00020;font-weight:600}";

export async function startMockGateway(opts: MockGatewayOptions = {}): Promise<MockGateway> {
	const host = opts.host ?? "127.0.0.1";
	const charges = new Map<string, Charge>();
	const answered = new Map<string, Stored>(); // idempotency key → the final answer
	const flakyAttempts = new Map<string, number>();
	const hanging = new Set<http.ServerResponse>();
	const requests: Array<{ path: string; key: string }> = [];
	const slowUntil = new Map<string, number>(); // tok_slow: key → when its answers may leave
	const sessions = new Map<string, WireSession>();
	const timers = new Set<NodeJS.Timeout>();
	const deliveries: WebhookDelivery[] = [];
	const held: WebhookDelivery[] = [];
	let webhook = opts.webhookUrl && opts.webhookSecret ? { url: opts.webhookUrl, secret: opts.webhookSecret } : undefined;
	let holding = false;
	let closed = false;
	let baseUrl = "";

	const later = (ms: number, fn: () => void) => {
		const t = setTimeout(() => {
			timers.delete(t);
			fn();
		}, ms);
		t.unref();
		timers.add(t);
	};
	const send = (res: http.ServerResponse, status: number, body: unknown) => {
		res.writeHead(status, { "Content-Type": "application/json" });
		res.end(JSON.stringify(body));
	};
	const error = (code: string, message: string, type = "invalid_request_error") => ({ error: { type, code, message } });

	/** Sends one event until it is answered 2xx, with backoff; queued while webhooks are held. */
	function deliver(d: WebhookDelivery) {
		if (closed) return;
		if (holding || !webhook) {
			if (!held.includes(d)) held.push(d);
			return;
		}
		const url = typeof webhook.url === "function" ? webhook.url() : webhook.url;
		const { secret } = webhook;
		const body = JSON.stringify(d.event);
		d.attempts++;
		const retry = () => later(Math.min(30000, (opts.webhookRetryBaseMs ?? 500) * 2 ** Math.min(10, d.attempts - 1)), () => deliver(d));
		fetch(url, { method: "POST", headers: { "Content-Type": "application/json", [SIGNATURE_HEADER]: signPayload(secret, body) }, body, signal: AbortSignal.timeout(10000) }).then(
			res => {
				d.lastStatus = res.status;
				if (res.ok) d.status = "delivered";
				else retry();
			},
			() => retry(),
		);
	}
	function emit(type: string, s: WireSession) {
		const d: WebhookDelivery = { event: { id: id("evt"), type, created: nowS(), data: { object: { ...s } } }, attempts: 0, status: "pending" };
		deliveries.push(d);
		deliver(d);
	}

	/** Ends an open session, saying so once; one that is no longer open stays as it is. */
	function expire(s: WireSession): WireSession {
		if (s.status === "open") {
			s.status = "expired";
			emit("checkout.session.expired", s);
		}
		return s;
	}
	/** The session as it is now: an open one past its expiry has expired. */
	const current = (s: WireSession) => (nowS() >= s.expires_at ? expire(s) : s);

	function charge(key: string, body: any): [number, unknown] | "hang" | "flaky" {
		const { amount, currency, token } = body ?? {};
		if (!Number.isSafeInteger(amount) || amount <= 0) return [400, error("invalid_amount", "amount must be a positive integer of minor units")];
		if (typeof currency !== "string" || !/^[A-Za-z]{3}$/.test(currency)) return [400, error("invalid_currency", "currency must be an ISO 4217 code")];
		switch (token) {
			case "tok_timeout":
				return "hang";
			case "tok_flaky": {
				const n = (flakyAttempts.get(key) ?? 0) + 1;
				flakyAttempts.set(key, n);
				if (n <= 2) return "flaky";
				break;
			}
			case "tok_chargeDeclined":
				return [402, error("card_declined", "Your card was declined.", "card_error")];
			case "tok_insufficientFunds":
				return [402, error("insufficient_funds", "Your card has insufficient funds.", "card_error")];
			case "tok_visa":
			case "tok_refundFail":
			case "tok_slow":
				break;
			default:
				return [400, error("invalid_token", `Unknown card token ${String(token)}`)];
		}
		const c: Charge = { id: id("ch"), amount, currency: currency.toUpperCase(), token, status: "succeeded", refunded: 0, idempotencyKey: key, sessionId: body.session, createdAt: new Date().toISOString(), refunds: [] };
		charges.set(c.id, c);
		return [201, { id: c.id, object: "charge", amount: c.amount, currency: c.currency, status: c.status }];
	}

	function refund(key: string, body: any): [number, unknown] | "flaky" {
		const c = charges.get(body?.charge);
		if (!c) return [404, error("resource_missing", `No such charge: ${String(body?.charge)}`)];
		if (c.token === "tok_refundFail") return "flaky";
		const amount = body.amount ?? c.amount - c.refunded;
		if (!Number.isSafeInteger(amount) || amount <= 0 || amount > c.amount - c.refunded) return [400, error("invalid_amount", "refund amount exceeds what is left to refund")];
		const r = { id: id("re"), amount, idempotencyKey: key };
		c.refunds.push(r);
		c.refunded += amount;
		return [201, { id: r.id, object: "refund", charge: c.id, amount, status: "succeeded" }];
	}

	function createSession(body: any): [number, unknown] {
		const { amount, currency, success_url, cancel_url, expires_at, client_reference_id } = body ?? {};
		if (!Number.isSafeInteger(amount) || amount <= 0) return [400, error("invalid_amount", "amount must be a positive integer of minor units")];
		if (typeof currency !== "string" || !/^[A-Za-z]{3}$/.test(currency)) return [400, error("invalid_currency", "currency must be an ISO 4217 code")];
		if (!isWebUrl(success_url) || !isWebUrl(cancel_url)) return [400, error("url_invalid", "success_url and cancel_url must be http(s) URLs")];
		if (!Number.isSafeInteger(expires_at) || expires_at <= nowS()) return [400, error("expires_at_invalid", "expires_at must be a future unix time")];
		const sid = id("cs");
		const s: WireSession = {
			id: sid,
			object: "checkout.session",
			url: `${baseUrl}/checkout/${sid}`,
			status: "open",
			payment_status: "unpaid",
			amount_total: amount,
			currency: currency.toUpperCase(),
			success_url,
			cancel_url,
			expires_at,
			client_reference_id: typeof client_reference_id === "string" ? client_reference_id : null,
			charge: null,
			last_error: null,
			created: nowS(),
		};
		sessions.set(sid, s);
		later((expires_at - nowS()) * 1000 + 50, () => current(s));
		return [201, s];
	}

	function expireSession(sid: string): [number, unknown] {
		const s = sessions.get(sid);
		if (!s) return [404, error("resource_missing", `No such checkout session: ${sid}`)];
		return [200, expire(s)];
	}

	/** The hosted payment page: the amount, the test cards, Pay and Cancel (or what became of the session). */
	function page(s: WireSession, message?: string): string {
		const amount = `${(s.amount_total / 100).toFixed(2)} ${escapeHtml(s.currency)}`;
		const open = s.status === "open";
		const form = open
			? `<form method="post" action="/checkout/${escapeHtml(s.id)}/pay"><fieldset><legend>Test card</legend>
${PAGE_CARDS.map(([token, label], i) => `<label><input type="radio" name="card" value="${token}"${i === 0 ? " checked" : ""}> ${escapeHtml(label)}</label>`).join("\n")}
</fieldset><p><button type="submit">Pay ${amount}</button><a class="button" href="${escapeHtml(s.cancel_url)}">Cancel</a></p></form>`
			: `<p>This payment session is ${escapeHtml(s.status)}.</p><p><a href="${escapeHtml(s.status === "complete" ? successUrlOf(s) : s.cancel_url)}">Back to the shop</a></p>`;
		return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Pay ${amount} — mock gateway</title><style>${PAGE_CSS}</style></head>
<body><main><h1>Pay ${amount}</h1><p>Mock card gateway · session <code>${escapeHtml(s.id)}</code> · expires ${new Date(s.expires_at * 1000).toISOString()}</p>
${message ? `<p class="error" role="alert">${escapeHtml(message)}</p>` : ""}${form}</main></body></html>`;
	}
	const sendPage = (res: http.ServerResponse, status: number, html: string) => {
		res.writeHead(status, { "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; frame-ancestors 'none'", "Cache-Control": "no-store" });
		res.end(html);
	};

	/** The page's Pay button: one charge per session; a decline stays on the page to try another card. */
	function pay(res: http.ServerResponse, s: WireSession, raw: string) {
		if (current(s).status !== "open") return sendPage(res, 409, page(s));
		const token = new URLSearchParams(raw).get("card") ?? "";
		const [status, answer] = charge(`/checkout:${s.id}:${token}`, { amount: s.amount_total, currency: s.currency, token, session: s.id }) as [number, any];
		if (status !== 201) {
			s.last_error = answer?.error?.message ?? "The card was refused";
			return sendPage(res, 402, page(s, s.last_error!));
		}
		Object.assign(s, { status: "complete", payment_status: "paid", charge: answer.id, last_error: null });
		emit("checkout.session.completed", s);
		res.writeHead(303, { Location: successUrlOf(s), "Cache-Control": "no-store" });
		res.end();
	}

	/** The JSON API's POSTs: every one carries an Idempotency-Key, and the same key answers the same. */
	function apiPost(req: http.IncomingMessage, res: http.ServerResponse, path: string, raw: string) {
		const key = req.headers["idempotency-key"];
		requests.push({ path, key: String(key ?? "") });
		if (typeof key !== "string" || key.length === 0) return send(res, 400, error("idempotency_key_missing", "An Idempotency-Key header is required"));
		let body: unknown;
		try {
			body = JSON.parse(raw || "{}");
		} catch {
			return send(res, 400, error("invalid_json", "The body is not JSON"));
		}
		const scopedKey = `${path}:${key}`;
		const print = fingerprint(body);
		if ((body as { token?: string })?.token === "tok_slow" && !slowUntil.has(scopedKey)) slowUntil.set(scopedKey, Date.now() + 2500);
		const hold = Math.max(0, (slowUntil.get(scopedKey) ?? 0) - Date.now());
		const reply = (status: number, answer: unknown) => (hold > 0 ? setTimeout(() => send(res, status, answer), hold) : send(res, status, answer));
		const previous = answered.get(scopedKey);
		if (previous) {
			if (previous.fingerprint !== print) return send(res, 400, error("idempotency_key_reused", "Keys are for one request body only"));
			return reply(previous.status, previous.body);
		}
		const expiring = /^\/checkout\/sessions\/([^/]+)\/expire$/.exec(path);
		const outcome =
			path === "/charges" ? charge(scopedKey, body) : path === "/refunds" ? refund(scopedKey, body) : path === "/checkout/sessions" ? createSession(body) : expiring ? expireSession(expiring[1]) : ([404, error("not_found", "No such route")] as [number, unknown]);
		if (outcome === "hang") {
			hanging.add(res);
			res.on("close", () => hanging.delete(res));
			return;
		}
		if (outcome === "flaky") return send(res, 503, error("service_unavailable", "Try again later", "api_error"));
		const [status, answer] = outcome;
		answered.set(scopedKey, { fingerprint: print, status, body: answer });
		reply(status, answer);
	}

	const server = http.createServer((req, res) => {
		let raw = "";
		req.on("data", d => (raw += d));
		req.on("end", () => {
			const path = (req.url ?? "/").split("?")[0];
			if (req.method === "GET" && path === "/charges") return send(res, 200, { data: [...charges.values()] });
			if (req.method === "GET" && path === "/health") return send(res, 200, { status: "ok" });
			const sessionApi = /^\/checkout\/sessions\/([^/]+)$/.exec(path);
			if (req.method === "GET" && sessionApi) {
				const s = sessions.get(sessionApi[1]);
				return s ? send(res, 200, current(s)) : send(res, 404, error("resource_missing", `No such checkout session: ${sessionApi[1]}`));
			}
			const hosted = /^\/checkout\/(cs_[0-9a-f]+)(\/pay)?$/.exec(path);
			if (hosted) {
				const s = sessions.get(hosted[1]);
				if (!s) return sendPage(res, 404, "<!doctype html><title>Not found</title><p>No such payment session.</p>");
				if (req.method === "GET" && !hosted[2]) return sendPage(res, 200, page(current(s), s.last_error ?? undefined));
				if (req.method === "POST" && hosted[2]) return pay(res, s, raw);
			}
			if (req.method === "POST" && (path === "/charges" || path === "/refunds" || path.startsWith("/checkout/sessions"))) return apiPost(req, res, path, raw);
			send(res, 404, error("not_found", "No such route"));
		});
	});
	await new Promise<void>((resolve, reject) => {
		server.once("error", reject);
		server.listen(opts.port ?? 0, host, () => resolve());
	});
	const address = server.address() as AddressInfo;
	const url = `http://${host}:${address.port}`;
	baseUrl = opts.publicUrl?.replace(/\/$/, "") ?? url;
	const releaseWebhooks = () => {
		holding = false;
		for (const d of held.splice(0)) deliver(d);
	};
	return {
		url,
		charges: () => [...charges.values()],
		requests: () => [...requests],
		sessions: () => [...sessions.values()].map(current),
		webhooks: () => [...deliveries],
		configureWebhooks(url, secret) {
			webhook = { url, secret };
			if (!holding) releaseWebhooks();
		},
		holdWebhooks() {
			holding = true;
		},
		releaseWebhooks,
		close: () =>
			new Promise<void>(resolve => {
				closed = true;
				for (const t of timers) clearTimeout(t);
				for (const res of hanging) res.destroy();
				server.closeAllConnections();
				server.close(() => resolve());
			}),
	};
}
