import type { ServiceBroker } from "moleculer";
import { API_ROUTES, type ApiRoute } from "./routes";

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

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const page = (item: string): Schema => ({
	type: "object",
	required: ["rows", "total", "page", "pageSize", "totalPages"],
	properties: { rows: { type: "array", items: ref(item) }, total: { type: "integer" }, page: { type: "integer" }, pageSize: { type: "integer" }, totalPages: { type: "integer" } },
});
const obj = (properties: Record<string, Schema>, required = Object.keys(properties)): Schema => ({ type: "object", properties, required });
const S = { string: { type: "string" }, int: { type: "integer" }, uuid: { type: "string", format: "uuid" }, time: { type: "string", format: "date-time" }, bool: { type: "boolean" }, any: {} };

/** The response bodies of SPEC section 4. */
const COMPONENTS: Record<string, Schema> = {
	Error: obj({ error: obj({ code: S.string, message: S.string, details: S.any }, ["code", "message"]) }),
	Product: obj({ id: S.uuid, sku: S.string, name: S.string, description: S.string, category: S.string, price: S.int, currency: S.string, imageUrl: { type: "string", nullable: true }, available: S.int }),
	ProductPage: page("Product"),
	StockLevel: obj({ productId: S.uuid, sku: S.string, name: S.string, onHand: S.int, reserved: S.int, available: S.int }),
	StockLevelPage: page("StockLevel"),
	OrderLine: obj({ productId: S.uuid, sku: S.string, name: S.string, quantity: S.int, unitPrice: S.int, lineTotal: S.int }),
	CartValidation: obj({
		valid: S.bool,
		errors: { type: "array", items: obj({ code: S.string, message: S.string, productId: S.string, field: S.string }, ["code", "message"]) },
		lines: { type: "array", items: ref("OrderLine") },
		subtotal: S.int,
		discount: S.int,
		voucherDiscount: S.int,
		total: S.int,
		currency: S.string,
	}),
	Order: obj(
		{
			id: S.uuid,
			userId: S.string,
			status: { enum: ["CREATED", "PAYMENT_PENDING", "PAYMENT_SUCCESS", "CONFIRMED", "DISPATCHED", "COMPLETED", "FAILED", "PAYMENT_FAILED", "CANCELLED"] },
			paymentStatus: { enum: ["NOT_STARTED", "PENDING", "AUTHORIZED", "FAILED", "REFUND_PENDING", "REFUNDED", "REFUND_FAILED"] },
			items: { type: "array", items: ref("OrderLine") },
			subtotal: S.int,
			discount: S.int,
			voucherDiscount: S.int,
			total: S.int,
			currency: S.string,
			promoCodes: { type: "array", items: S.string },
			voucherCodes: { type: "array", items: S.string },
			shippingAddress: { type: "object" },
			payment: obj({ method: { enum: ["WALLET", "CARD"] }, paymentId: S.uuid, failureReason: S.string }, []),
			failureReason: S.string,
			statusHistory: { type: "array", items: obj({ status: S.string, at: S.time, reason: S.string }, ["status", "at"]) },
			createdAt: S.time,
			updatedAt: S.time,
		},
		["id", "userId", "status", "paymentStatus", "items", "subtotal", "discount", "voucherDiscount", "total", "currency", "statusHistory", "createdAt", "updatedAt"],
	),
	OrderPage: page("Order"),
	PaymentResult: obj({ success: S.bool, order: ref("Order") }),
	Timeline: { type: "array", items: obj({ eventId: S.uuid, eventName: S.string, occurredAt: S.time, producer: obj({ service: S.string, nodeID: S.string }), data: { type: "object" } }) },
	EventStream: { type: "string", description: "text/event-stream: `order` (the order), then `status` per transition" },
	Wallet: obj({ userId: S.string, balance: S.int, currency: S.string }),
	LedgerEntry: obj(
		{ id: S.uuid, type: { enum: ["DEBIT", "CREDIT"] }, reason: { enum: ["PAYMENT", "REFUND", "TOP_UP", "ADJUSTMENT"] }, amount: S.int, balanceAfter: S.int, orderId: S.uuid, createdAt: S.time },
		["id", "type", "reason", "amount", "balanceAfter", "createdAt"],
	),
	LedgerPage: page("LedgerEntry"),
	Voucher: obj({ id: S.uuid, code: S.string, amount: S.int, currency: S.string, status: { enum: ["ACTIVE", "REDEEMED", "EXPIRED"] }, orderId: S.uuid, expiresAt: S.time, createdAt: S.time }),
	VoucherPage: page("Voucher"),
	Notification: obj({ id: S.uuid, type: { enum: ["ORDER", "PAYMENT", "DISPATCH", "VOUCHER", "REFUND"] }, title: S.string, message: S.string, orderId: S.uuid, isRead: S.bool, createdAt: S.time }, ["id", "type", "title", "message", "isRead", "createdAt"]),
	NotificationPage: page("Notification"),
	Analytics: obj({
		totalOrders: S.int,
		byStatus: { type: "object", additionalProperties: S.int },
		successfulOrders: S.int,
		failedPayments: S.int,
		pendingOrders: S.int,
		totalRevenue: S.int,
		revenueToday: S.int,
		averageOrderValue: S.int,
		currency: S.string,
		topProducts: { type: "array", items: obj({ productId: S.uuid, name: S.string, quantity: S.int, revenue: S.int }) },
	}),
	Promotion: obj({ code: S.string, type: { enum: ["PERCENT", "FIXED"] }, value: S.int, minSubtotal: S.int, startsAt: S.time, endsAt: S.time, maxRedemptions: S.int, redemptions: S.int }, ["code", "type", "value", "redemptions"]),
	PromotionPage: page("Promotion"),
	Health: obj({ status: S.string, checks: { type: "object", additionalProperties: S.string } }, ["status"]),
};

const ERROR_STATUSES: Record<string, string> = {
	"400": "Malformed input (field details)",
	"401": "No or invalid token",
	"403": "Wrong role",
	"404": "Unknown, or not yours",
	"409": "Conflict: illegal transition, idempotency key reused",
	"413": "Body too large",
	"415": "Body is not JSON",
	"422": "A business rule refused it",
	"429": "Rate limited (Retry-After)",
	"503": "Not ready or a dependency is down",
};

/** The path in OpenAPI syntax: /api/orders/{id}. */
export const openApiPath = (route: Pick<ApiRoute, "path">) => `/api${route.path.replace(/:([A-Za-z]+)/g, "{$1}")}`;

function operation(route: ApiRoute, actions: Map<string, Record<string, unknown>>): Schema {
	const params = actions.get(route.action) ?? {};
	const parameters: Schema[] = [];
	for (const name of route.path.match(/:([A-Za-z]+)/g)?.map(p => p.slice(1)) ?? []) {
		parameters.push({ name, in: "path", required: true, schema: name === "userId" ? S.string : S.uuid });
	}
	for (const name of route.query ?? []) {
		const rule = name === "access_token" ? { type: "string", optional: true } : (params[name] ?? { type: "string", optional: true });
		parameters.push({ name, in: "query", required: false, schema: ruleToSchema(rule).schema });
	}
	for (const name of route.headers ?? []) parameters.push({ name, in: "header", required: false, schema: S.string });
	const statuses = ["400", "404", "429", "503"];
	if (route.access !== "public") statuses.push("401");
	if (route.access === "admin") statuses.push("403");
	if (route.method !== "GET") statuses.push("409", "413", "415", "422");
	const success = String(route.status ?? 200);
	const responses: Record<string, Schema> = {
		[success]: route.response === "EventStream" ? { description: "Server-Sent Events", content: { "text/event-stream": { schema: ref("EventStream") } } } : { description: "OK", content: { "application/json": { schema: ref(route.response ?? "Error") } } },
	};
	if (route.action === "order.create") responses["200"] = { description: "The same Idempotency-Key and body: the first order", content: { "application/json": { schema: ref("Order") } } };
	for (const s of statuses.sort()) responses[s] = { description: ERROR_STATUSES[s], content: { "application/json": { schema: ref("Error") } } };
	return {
		operationId: route.action.replace(".", "_") + (route.method === "GET" ? "" : `_${route.method.toLowerCase()}`),
		summary: route.summary,
		tags: [route.tag],
		"x-access": route.access,
		...(route.access === "public" ? { security: [] } : { security: [{ bearerAuth: [] }] }),
		...(parameters.length ? { parameters } : {}),
		...(route.body ? { requestBody: { required: true, content: { "application/json": { schema: objectSchema(params, route.body) } } } } : {}),
		responses,
	};
}

const plain = (summary: string, schema: string, contentType = "application/json"): Schema => ({
	summary,
	tags: ["Operations"],
	security: [],
	responses: { "200": { description: "OK", content: { [contentType]: { schema: contentType === "application/json" ? ref(schema) : { type: "string" } } } } },
});

/** The OpenAPI 3 document of every route, with request schemas read from the live actions. */
export function buildOpenApi(broker: ServiceBroker): Schema {
	const list = (broker.registry as any).getActionList({ skipInternal: true }) as Array<{ name: string; action?: { params?: Record<string, unknown> } }>;
	const actions = new Map(list.map(a => [a.name, a.action?.params ?? {}]));
	const paths: Record<string, Record<string, Schema>> = {
		"/health/live": { get: plain("Liveness", "Health") },
		"/health/ready": { get: { ...plain("Readiness: database, transporter, Redis, Kafka", "Health"), responses: { "200": { description: "Ready", content: { "application/json": { schema: ref("Health") } } }, "503": { description: "Not ready: the failing check is named", content: { "application/json": { schema: ref("Health") } } } } } },
		"/metrics": { get: plain("Prometheus metrics", "", "text/plain") },
		"/api/openapi.json": { get: { ...plain("This document", ""), responses: { "200": { description: "OpenAPI 3", content: { "application/json": { schema: { type: "object" } } } } } } },
		"/api/docs": { get: plain("This document as a page", "", "text/html") },
	};
	for (const route of API_ROUTES) {
		const path = openApiPath(route);
		paths[path] ??= {};
		paths[path][route.method.toLowerCase()] = operation(route, actions);
	}
	return {
		openapi: "3.0.3",
		info: {
			title: "Checkout API",
			version: "1.0.0",
			description: "Money is in integer minor units (cents) with an ISO 4217 currency. Errors: {error: {code, message, details}}. Lists page with page/pageSize (max 100).",
		},
		servers: [{ url: "/" }],
		paths,
		components: { schemas: COMPONENTS, securitySchemes: { bearerAuth: { type: "http", scheme: "bearer", bearerFormat: "JWT" } } },
	};
}

const escape = (s: unknown) => String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

/** The document as one HTML page rendered on the server (no scripts, so a strict CSP holds). */
export function renderDocsPage(doc: Schema): string {
	const paths = doc.paths as Record<string, Record<string, any>>;
	const rows = Object.entries(paths)
		.flatMap(([path, ops]) =>
			Object.entries(ops).map(([method, op]) => {
				const params = (op.parameters ?? []).map((p: any) => `${escape(p.name)} <small>(${escape(p.in)})</small>`).join(", ");
				const body = op.requestBody ? Object.keys(op.requestBody.content["application/json"].schema.properties ?? {}).map(escape).join(", ") : "";
				return `<tr><td><code>${method.toUpperCase()}</code></td><td><code>${escape(path)}</code></td><td>${escape(op.summary)}</td><td>${escape(op["x-access"] ?? "public")}</td><td>${params}</td><td>${body}</td><td>${Object.keys(op.responses).join(" ")}</td></tr>`;
			}),
		)
		.join("\n");
	return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Checkout API</title>
<style>body{font:14px system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.3rem .5rem;vertical-align:top}code{font-size:13px}</style></head>
<body><h1>Checkout API</h1><p>${escape((doc.info as any).description)} The machine-readable document: <a href="/api/openapi.json">/api/openapi.json</a>.</p>
<table><thead><tr><th>Method</th><th>Path</th><th>What</th><th>Access</th><th>Parameters</th><th>Body</th><th>Responses</th></tr></thead><tbody>
${rows}
</tbody></table></body></html>`;
}
