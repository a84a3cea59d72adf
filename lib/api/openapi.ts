import type { ServiceBroker } from "moleculer";
import { API_ROUTES, type ApiRoute } from "./routes";
import { runtimeOf } from "../runtime";
import { devSignIn } from "./auth";
import { escapeHtml } from "../html";

type Schema = Record<string, unknown>;

/** A fastest-validator rule → JSON Schema, for the types this project's actions use. */
export function ruleToSchema(rule: unknown): { schema: Schema; optional: boolean } {
	if (typeof rule === "string") {
		const [type, ...flags] = rule.split("|");
		return { schema: ruleToSchema({ type }).schema, optional: flags.includes("optional") };
	}
	const r = (rule ?? {}) as Record<string, any>;
	const optional = r.optional === true || r.default !== undefined;
	const base: Schema = {};
	if (r.default !== undefined) base.default = r.default;
	if (r.nullable === true) base.nullable = true;
	switch (r.type) {
		case "string":
			return { optional, schema: { ...base, type: "string", minLength: r.min ?? (r.length as number | undefined), maxLength: r.max ?? r.length, pattern: r.pattern instanceof RegExp ? r.pattern.source : typeof r.pattern === "string" ? r.pattern : undefined } };
		case "number":
			return {
				optional,
				schema: { ...base, type: r.integer ? "integer" : "number", minimum: r.min ?? (r.positive ? (r.integer ? 1 : undefined) : undefined), exclusiveMinimum: r.positive && !r.integer ? 0 : undefined, maximum: r.max },
			};
		case "boolean":
			return { optional, schema: { ...base, type: "boolean" } };
		case "uuid":
			return { optional, schema: { ...base, type: "string", format: "uuid" } };
		case "email":
			return { optional, schema: { ...base, type: "string", format: "email" } };
		case "url":
			return { optional, schema: { ...base, type: "string", format: "uri" } };
		case "date":
			return { optional, schema: { ...base, type: "string", format: "date-time" } };
		case "enum":
			return { optional, schema: { ...base, enum: r.values } };
		case "array":
			return { optional, schema: { ...base, type: "array", items: r.items ? ruleToSchema(r.items).schema : {}, minItems: r.min, maxItems: r.max } };
		case "object":
			return { optional, schema: { ...base, ...objectSchema(r.props ?? {}) } };
		default:
			return { optional, schema: base };
	}
}

function objectSchema(props: Record<string, unknown>, only?: string[]): Schema {
	const properties: Record<string, Schema> = {};
	const required: string[] = [];
	for (const [name, rule] of Object.entries(props)) {
		if (only && !only.includes(name)) continue;
		const { schema, optional } = ruleToSchema(rule);
		properties[name] = schema;
		if (!optional) required.push(name);
	}
	return { type: "object", properties, ...(required.length ? { required } : {}) };
}

/** JSON.stringify drops undefined keys; the linters want no `maxLength: undefined` either. */
const compact = (schema: unknown): Schema => JSON.parse(JSON.stringify(schema));

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const obj = (properties: Record<string, Schema>, required = Object.keys(properties)): Schema => ({ type: "object", properties, ...(required.length ? { required } : {}) });
const nullable = (schema: Schema): Schema => ({ ...schema, nullable: true });
/** Money is integer cents; counts are whole numbers; neither is negative in an answer. */
const S = {
	string: { type: "string" },
	int: { type: "integer", format: "int64", minimum: 0 },
	money: { type: "integer", format: "int64", minimum: 0, description: "minor units (cents)" },
	uuid: { type: "string", format: "uuid" },
	time: { type: "string", format: "date-time" },
	bool: { type: "boolean" },
	currency: { type: "string", pattern: "^[A-Z]{3}$", example: "EUR" },
	any: {},
};

const page = (item: string): Schema => ({
	type: "object",
	required: ["rows", "total", "page", "pageSize", "totalPages"],
	properties: { rows: { type: "array", items: ref(item) }, total: S.int, page: { ...S.int, minimum: 1 }, pageSize: { ...S.int, minimum: 1, maximum: 100 }, totalPages: S.int },
});
const ORDER_STATUS = { type: "string", enum: ["CREATED", "PAYMENT_PENDING", "PAYMENT_SUCCESS", "CONFIRMED", "DISPATCHED", "COMPLETED", "FAILED", "PAYMENT_FAILED", "CANCELLED"] };

/** The response bodies of SPEC section 4; the order's address and customer as `order.create` takes them. */
function components(actions: Map<string, Record<string, unknown>>): Record<string, Schema> {
	const createOrder = actions.get("order.create") ?? {};
	const shippingAddress = createOrder.shippingAddress ? ruleToSchema(createOrder.shippingAddress).schema : { type: "object" };
	const customer = createOrder.customer ? ruleToSchema(createOrder.customer).schema : { type: "object" };
	return {
		Error: obj({ error: obj({ code: { ...S.string, example: "OUT_OF_STOCK" }, message: S.string, details: { description: "what the code needs: the fields of a 400, the lines of a 422 …" } }, ["code", "message"]) }),
		Product: obj({ id: S.uuid, sku: S.string, name: S.string, description: S.string, category: S.string, price: S.money, currency: S.currency, imageUrl: nullable({ type: "string", format: "uri" }), available: S.int, active: S.bool }, ["id", "sku", "name", "description", "category", "price", "currency", "imageUrl", "available"]),
		ProductPage: page("Product"),
		Category: obj({ name: S.string, products: { ...S.int, minimum: 1 } }),
		CategoryPage: page("Category"),
		StockLevel: obj({ productId: S.uuid, sku: S.string, name: S.string, onHand: S.int, reserved: S.int, available: S.int }),
		StockLevelPage: page("StockLevel"),
		OrderLine: obj({ productId: S.uuid, sku: S.string, name: S.string, quantity: { ...S.int, minimum: 1 }, unitPrice: S.money, lineTotal: S.money }),
		CartLine: obj({ productId: S.uuid, sku: S.string, name: S.string, quantity: { ...S.int, minimum: 1 }, unitPrice: S.money, lineTotal: S.money }, ["productId", "name", "quantity", "unitPrice", "lineTotal"]),
		CartValidation: obj({
			valid: S.bool,
			errors: { type: "array", items: obj({ code: S.string, message: S.string, productId: S.string, field: S.string }, ["code", "message"]) },
			lines: { type: "array", items: ref("CartLine") },
			subtotal: S.money,
			discount: S.money,
			voucherDiscount: S.money,
			total: S.money,
			currency: S.currency,
		}),
		Order: obj(
			{
				id: S.uuid,
				userId: S.string,
				status: ORDER_STATUS,
				paymentStatus: { type: "string", enum: ["NOT_STARTED", "PENDING", "AUTHORIZED", "FAILED", "REFUND_PENDING", "REFUNDED", "REFUND_FAILED"] },
				items: { type: "array", items: ref("OrderLine"), minItems: 1, maxItems: 50 },
				subtotal: S.money,
				discount: S.money,
				voucherDiscount: S.money,
				total: S.money,
				currency: S.currency,
				promoCodes: { type: "array", items: S.string },
				voucherCodes: { type: "array", items: S.string },
				shippingAddress,
				customer,
				payment: obj({ method: { type: "string", enum: ["WALLET", "CARD", "HOSTED_CARD"] }, paymentId: S.uuid, sessionId: { ...S.string, description: "the hosted payment session the order waits on" }, failureReason: S.string }, []),
				failureReason: S.string,
				failureCode: S.string,
				failureDetails: { description: "what failed, e.g. the lines out of stock" },
				shipment: obj({ courier: S.string, trackingNumber: S.string }),
				statusHistory: { type: "array", items: obj({ status: ORDER_STATUS, at: S.time, reason: S.string }, ["status", "at"]) },
				createdAt: S.time,
				updatedAt: S.time,
			},
			["id", "userId", "status", "paymentStatus", "items", "subtotal", "discount", "voucherDiscount", "total", "currency", "promoCodes", "voucherCodes", "shippingAddress", "payment", "statusHistory", "createdAt", "updatedAt"],
		),
		OrderPage: page("Order"),
		PaymentResult: obj({ success: S.bool, order: ref("Order") }),
		PaymentSession: obj({
			id: { ...S.string, example: "cs_4f1c…" },
			orderId: S.uuid,
			url: { type: "string", format: "uri", description: "the gateway's payment page: send the customer there" },
			status: { type: "string", enum: ["open", "complete", "expired"] },
			paymentStatus: { type: "string", enum: ["unpaid", "paid"] },
			amount: S.money,
			currency: S.currency,
			successUrl: { ...S.string, description: "where the gateway sends the customer after paying; {SESSION_ID} is filled in" },
			cancelUrl: S.string,
			expiresAt: { ...S.time, description: "never after the order's stock reservation" },
			createdAt: S.time,
		}),
		WebhookEvent: obj(
			{
				id: { ...S.string, example: "evt_…" },
				type: { type: "string", example: "checkout.session.completed", description: "checkout.session.completed or checkout.session.expired; any other type is acknowledged and ignored" },
				created: S.int,
				data: obj({ object: { type: "object", description: "the session, as the gateway sends it" } }, []),
			},
			["id", "type"],
		),
		WebhookAck: obj({ received: S.bool, duplicate: S.bool, ignored: S.bool }, ["received"]),
		NodeList: {
			type: "array",
			items: obj(
				{
					nodeID: S.string,
					status: { type: "string", enum: ["ok", "unavailable"] },
					services: { type: "array", items: S.string },
					checks: { type: "object", additionalProperties: S.string },
					uptimeSeconds: S.int,
					memoryMb: S.int,
					shuttingDown: S.bool,
					error: S.string,
				},
				["nodeID", "status", "services", "checks"],
			),
		},
		StuckOrders: {
			type: "array",
			items: obj({ id: S.uuid, userId: S.string, status: ORDER_STATUS, paymentStatus: S.string, stepDeadline: nullable(S.time), redrives: S.int, updatedAt: S.time }),
		},
		DeadLetters: {
			type: "array",
			items: obj({ service: S.string, id: { ...S.int, minimum: 1 }, eventId: nullable(S.uuid), eventName: S.string, error: S.string, attempts: S.int, createdAt: S.time }),
		},
		ReplayResult: obj({ outcome: { type: "string", enum: ["processed", "duplicate", "dead-lettered"] } }),
		OutboxBacklog: { type: "array", items: obj({ service: S.string, unpublished: S.int }) },
		DevToken: obj({ token: S.string, sub: S.string, role: { type: "string", enum: ["customer", "admin"] }, expiresIn: S.int }),
		Timeline: { type: "array", items: obj({ eventId: S.uuid, eventName: S.string, occurredAt: S.time, producer: obj({ service: S.string, nodeID: S.string }), data: { type: "object" } }) },
		EventStream: { type: "string", description: "text/event-stream: `order` (the order), then `status` per transition" },
		Wallet: obj({ userId: S.string, balance: S.money, currency: S.currency }),
		LedgerEntry: obj(
			{ id: S.uuid, type: { type: "string", enum: ["DEBIT", "CREDIT"] }, reason: { type: "string", enum: ["PAYMENT", "REFUND", "TOP_UP", "ADJUSTMENT"] }, amount: S.money, balanceAfter: S.money, orderId: S.uuid, note: S.string, createdAt: S.time },
			["id", "type", "reason", "amount", "balanceAfter", "createdAt"],
		),
		LedgerPage: page("LedgerEntry"),
		Voucher: obj(
			{ id: S.uuid, code: S.string, amount: S.money, currency: S.currency, status: { type: "string", enum: ["ACTIVE", "REDEEMED", "EXPIRED"] }, orderId: S.uuid, expiresAt: S.time, createdAt: S.time },
			["id", "code", "amount", "currency", "status", "expiresAt", "createdAt"],
		),
		VoucherPage: page("Voucher"),
		Notification: obj(
			{ id: S.uuid, type: { type: "string", enum: ["ORDER", "PAYMENT", "DISPATCH", "VOUCHER", "REFUND"] }, title: S.string, message: S.string, orderId: S.uuid, isRead: S.bool, createdAt: S.time },
			["id", "type", "title", "message", "isRead", "createdAt"],
		),
		NotificationPage: page("Notification"),
		Analytics: obj({
			totalOrders: S.int,
			byStatus: { type: "object", additionalProperties: S.int },
			successfulOrders: S.int,
			failedPayments: S.int,
			pendingOrders: S.int,
			totalRevenue: S.money,
			revenueToday: S.money,
			averageOrderValue: S.money,
			currency: S.currency,
			topProducts: { type: "array", items: obj({ productId: S.uuid, name: S.string, quantity: S.int, revenue: S.money }) },
		}),
		Promotion: obj(
			{
				code: S.string,
				type: { type: "string", enum: ["PERCENT", "FIXED"] },
				value: S.int,
				minSubtotal: nullable(S.money),
				startsAt: nullable(S.time),
				endsAt: nullable(S.time),
				maxRedemptions: nullable({ ...S.int, minimum: 1 }),
				redemptions: S.int,
			},
			["code", "type", "value", "minSubtotal", "startsAt", "endsAt", "maxRedemptions", "redemptions"],
		),
		PromotionPage: page("Promotion"),
		Health: obj({ status: { type: "string", enum: ["ok", "unavailable"] }, checks: { type: "object", additionalProperties: S.string } }, ["status"]),
	};
}

const ERROR_STATUSES: Record<string, string> = {
	"400": "Malformed input (field details)",
	"401": "No or invalid token",
	"403": "Wrong role",
	"404": "Unknown, or not yours",
	"409": "Conflict: illegal transition, idempotency key reused",
	"413": "Body too large",
	"408": "The request did not arrive in time",
	"415": "Body is not JSON, or an unknown Content-Encoding",
	"422": "A business rule refused it",
	"429": "Rate limited (Retry-After)",
	"431": "Request headers too large",
	"501": "Switched off in this deployment (the message names the setting)",
	"500": "A fault on the server's side (never for bad input); the X-Request-ID finds it in the logs",
	"503": "Not ready or a dependency is down",
};
/** An error answer: the one error body, described. */
const errorResponse = (description: string): Schema => ({ description, content: { "application/json": { schema: ref("Error") } } });
/** What any request can be answered, whatever the operation. */
const ALWAYS = ["400", "408", "429", "431", "500", "503"];

/** Path parameters that are not uuids. */
const PATH_PARAMS: Record<string, Schema> = { userId: S.string, sessionId: S.string, service: S.string, letterId: { ...S.int, minimum: 1 } };

/** The path in OpenAPI syntax: /api/orders/{id}. */
export const openApiPath = (route: Pick<ApiRoute, "path">) => `/api${route.path.replace(/:([A-Za-z]+)/g, "{$1}")}`;

function operation(route: ApiRoute, actions: Map<string, Record<string, unknown>>): Schema {
	const params = actions.get(route.action) ?? {};
	const parameters: Schema[] = [];
	for (const name of route.path.match(/:([A-Za-z]+)/g)?.map(p => p.slice(1)) ?? []) {
		parameters.push({ name, in: "path", required: true, schema: PATH_PARAMS[name] ?? S.uuid });
	}
	for (const name of route.query ?? []) {
		const rule = name === "access_token" ? { type: "string", optional: true } : (params[name] ?? { type: "string", optional: true });
		parameters.push({ name, in: "query", required: false, schema: ruleToSchema(rule).schema });
	}
	for (const name of route.headers ?? []) parameters.push({ name, in: "header", required: false, schema: S.string });
	const statuses = [...ALWAYS, "404"];
	if (route.access !== "public") statuses.push("401");
	if (route.access === "admin") statuses.push("403");
	if (route.method !== "GET") statuses.push("409", "413", "415", "422");
	const success = String(route.status ?? 200);
	const responses: Record<string, Schema> = {
		[success]: route.response === "EventStream" ? { description: "Server-Sent Events", content: { "text/event-stream": { schema: ref("EventStream") } } } : { description: "OK", content: { "application/json": { schema: ref(route.response ?? "Error") } } },
	};
	if (route.action === "order.create") responses["200"] = { description: "The same Idempotency-Key and body: the first order", content: { "application/json": { schema: ref("Order") } } };
	if (route.action === "order.createPaymentSession") statuses.push("501");
	for (const s of statuses.sort()) responses[s] = errorResponse(ERROR_STATUSES[s]);
	const body = route.body ? objectSchema(params, route.body) : undefined;
	return {
		description: `${route.summary}. ${route.access === "admin" ? "Needs the admin role." : route.access === "user" ? "A customer acts on their own resources; an admin on anyone's." : "Public."}`,
		operationId: route.action.replace(".", "_") + (route.method === "GET" ? "" : `_${route.method.toLowerCase()}`),
		summary: route.summary,
		tags: [route.tag],
		"x-access": route.access,
		...(route.access === "public" ? { security: [] } : { security: [{ bearerAuth: [] }] }),
		...(parameters.length ? { parameters } : {}),
		// A body is required only where it has required fields (cancel's reason, a product patch: optional).
		...(body ? { requestBody: { required: Array.isArray(body.required), content: { "application/json": { schema: body } } } } : {}),
		responses,
	};
}

const TAGS = [
	{ name: "Catalogue", description: "Products and stock" },
	{ name: "Cart", description: "Checking a cart before ordering" },
	{ name: "Orders", description: "Placing, paying, following and fulfilling orders" },
	{ name: "Wallet", description: "Balances and their ledger" },
	{ name: "Vouchers", description: "Vouchers earned by large dispatched orders" },
	{ name: "Notifications", description: "What happened to a customer's orders" },
	{ name: "Analytics", description: "Order figures for operators" },
	{ name: "Promotions", description: "Promo codes" },
	{ name: "Operations", description: "Health, metrics and this document" },
];

const plain = (operationId: string, summary: string, schema: string, contentType = "application/json"): Schema => ({
	operationId,
	summary,
	tags: ["Operations"],
	security: [],
	responses: {
		"200": { description: "OK", content: { [contentType]: { schema: contentType === "application/json" ? ref(schema) : { type: "string" } } } },
		...Object.fromEntries(["408", "431", "503"].map(s => [s, errorResponse(ERROR_STATUSES[s])])),
	},
});

/** The payment gateway's webhook: authenticated by its signature over the raw body, not by a token. */
function webhookOperation(): Schema {
	return {
		operationId: "payment_webhook_post",
		summary: "The payment gateway's signed events (hosted sessions)",
		description:
			"Sent by the payment gateway, not by clients. The `Gateway-Signature` header is `t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">` with PAYMENT_WEBHOOK_SECRET (Stripe's scheme); a timestamp more than 5 minutes away is refused. Applied once per event id (a replay has no second effect); unknown types are acknowledged and ignored; anything but 200 makes the gateway retry.",
		tags: ["Orders"],
		security: [],
		"x-access": "public",
		parameters: [{ name: "Gateway-Signature", in: "header", required: true, schema: { ...S.string, example: "t=1767225600,v1=5257a869…" } }],
		requestBody: { required: true, content: { "application/json": { schema: ref("WebhookEvent") } } },
		responses: {
			"200": { description: "Recorded (or a duplicate, or ignored)", content: { "application/json": { schema: ref("WebhookAck") } } },
			"400": errorResponse("Missing or malformed signature header, or a body that is not an event"),
			"401": errorResponse("Wrong signature, or its timestamp is outside the tolerance"),
			"413": errorResponse(ERROR_STATUSES["413"]),
			"501": errorResponse(ERROR_STATUSES["501"]),
			"503": errorResponse(ERROR_STATUSES["503"]),
		},
	};
}

/** The OpenAPI 3 document of every route, with request schemas read from the live actions. */
export function buildOpenApi(broker: ServiceBroker): Schema {
	const list = (broker.registry as any).getActionList({ skipInternal: true }) as Array<{ name: string; action?: { params?: Record<string, unknown> } }>;
	const actions = new Map(list.map(a => [a.name, a.action?.params ?? {}]));
	const paths: Record<string, Record<string, Schema>> = {
		"/health/live": { get: plain("health_live", "Liveness", "Health") },
		"/health/ready": { get: { ...plain("health_ready", "Readiness: every local service started; database, transporter, Redis, Kafka answer", "Health"), responses: { ...(plain("", "", "Health").responses as Schema), "200": { description: "Ready", content: { "application/json": { schema: ref("Health") } } }, "503": { description: "Not ready: the failing check is named", content: { "application/json": { schema: ref("Health") } } } } } },
		"/metrics": { get: plain("metrics", "Prometheus metrics", "", "text/plain") },
		"/api/openapi.json": { get: { ...plain("openapi", "This document", ""), responses: { ...(plain("", "", "").responses as Schema), "200": { description: "OpenAPI 3", content: { "application/json": { schema: { type: "object" } } } } } } },
		"/api/docs": { get: plain("docs", "This document as an interactive reference (Swagger UI)", "", "text/html") },
		"/api/webhooks/payment-gateway": { post: webhookOperation() },
	};
	const { config } = runtimeOf(broker);
	for (const route of API_ROUTES) {
		if (route.action === "gateway.devToken" && !devSignIn(config)) continue; // absent where it does not answer
		const path = openApiPath(route);
		paths[path] ??= {};
		paths[path][route.method.toLowerCase()] = operation(route, actions);
	}
	return compact({
		openapi: "3.0.3",
		info: {
			title: "Checkout API",
			version: "1.0.0",
			description: "Money is in integer minor units (cents) with an ISO 4217 currency. Errors: {error: {code, message, details}}. Lists page with page/pageSize (max 100).",
			license: { name: "UNLICENSED (private, all rights reserved)", url: "https://docs.npmjs.com/cli/configuring-npm/package-json#license" },
		},
		servers: [{ url: "/", description: "the gateway serving this document" }],
		tags: TAGS,
		paths,
		components: { schemas: components(actions), securitySchemes: { bearerAuth: { type: "http", scheme: "bearer", bearerFormat: "JWT" } } },
	});
}


/**
 * The reference page: Swagger UI (schemas, examples, try-it) from the swagger-ui-dist package,
 * served by the gateway itself (no CDN) under a CSP that allows only its own scripts; the same
 * operations as a plain table for readers without scripts.
 */
export function renderDocsPage(doc: Schema): string {
	const paths = doc.paths as Record<string, Record<string, any>>;
	const rows = Object.entries(paths)
		.flatMap(([path, ops]) =>
			Object.entries(ops).map(([method, op]) => {
				const params = (op.parameters ?? []).map((p: any) => `${escapeHtml(p.name)} <small>(${escapeHtml(p.in)})</small>`).join(", ");
				const body = op.requestBody ? Object.keys(op.requestBody.content["application/json"].schema.properties ?? {}).map(escapeHtml).join(", ") : "";
				return `<tr><td><code>${method.toUpperCase()}</code></td><td><code>${escapeHtml(path)}</code></td><td>${escapeHtml(op.summary)}</td><td>${escapeHtml(op["x-access"] ?? "public")}</td><td>${params}</td><td>${body}</td><td>${Object.keys(op.responses).join(" ")}</td></tr>`;
			}),
		)
		.join("\n");
	return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Checkout API</title>
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css"></head>
<body><main><div id="swagger-ui"></div>
<noscript><h1>Checkout API</h1><p>${escapeHtml((doc.info as any).description)} The machine-readable document: <a href="/api/openapi.json">/api/openapi.json</a>.</p>
<table><thead><tr><th>Method</th><th>Path</th><th>What</th><th>Access</th><th>Parameters</th><th>Body</th><th>Responses</th></tr></thead><tbody>
${rows}
</tbody></table></noscript></main>
<script src="/api/docs/assets/swagger-ui-bundle.js"></script><script src="/api/docs/assets/init.js"></script></body></html>`;
}

/** Starts Swagger UI on the page above: a file of its own, since the CSP allows no inline script. */
export const DOCS_INIT_SCRIPT = `window.ui = SwaggerUIBundle({ url: "/api/openapi.json", dom_id: "#swagger-ui", deepLinking: true, persistAuthorization: true, tryItOutEnabled: false });\n`;
