/**
 * The public REST API over real HTTP against a started embedded node: the contract's routes and
 * nothing else, auth and roles, every route's success and error codes, the full checkout, the
 * customers' isolation, idempotency, live tracking, and a fuzz of malformed writes. Every answer
 * is checked against the served OpenAPI document (declared status, schema of the body).
 */
import { randomUUID } from "node:crypto";
import jwt from "jsonwebtoken";
import { DEV_JWT_SECRET } from "../../lib/config";
import { eventually, startTestNode, tempDir, type TestNode } from "../../scripts/harness/node";
import { http, readEvents, tokenFor, type HttpResult } from "../../scripts/harness/http";
import { checkedApi, type CheckedApi } from "../helpers/openapi";

/** SPEC section 4, written out independently of the gateway's route table. */
const CONTRACT = [
	"GET /api/products",
	"GET /api/products/:id",
	"GET /api/categories", // the storefront's category filter, beyond SPEC's list
	"POST /api/products",
	"PATCH /api/products/:id",
	"POST /api/inventory/:productId/restock",
	"GET /api/inventory",
	"POST /api/cart/validate",
	"POST /api/orders",
	"GET /api/orders/:id",
	"GET /api/orders",
	"POST /api/orders/:id/process-payment",
	"POST /api/orders/:id/payment-session", // hosted card payments (issue 13), beyond SPEC's list
	"POST /api/payment-sessions/:sessionId/verify",
	"POST /api/webhooks/payment-gateway",
	"GET /api/admin/nodes", // the operations console (issue 14)
	"GET /api/admin/stuck-orders",
	"GET /api/admin/dead-letters",
	"POST /api/admin/dead-letters/:service/:letterId/replay",
	"GET /api/admin/outbox",
	"POST /api/dev/token", // development sign-in: outside production only
	"POST /api/orders/:id/cancel",
	"POST /api/orders/:id/dispatch",
	"POST /api/orders/:id/deliver",
	"GET /api/orders/:id/stream",
	"GET /api/orders/:id/timeline",
	"GET /api/wallet",
	"POST /api/wallet/top-ups",
	"GET /api/wallet/transactions",
	"POST /api/admin/wallets/:userId/adjustments",
	"GET /api/vouchers",
	"GET /api/notifications",
	"PUT /api/notifications/:id/read",
	"GET /api/analytics/orders",
	"POST /api/promotions",
	"GET /api/promotions",
	"GET /health/live",
	"GET /health/ready",
	"GET /metrics",
	"GET /api/openapi.json",
	"GET /api/docs",
	"GET /api/docs/assets/:file", // the reference page's own scripts and styles (Swagger UI), not an operation
].sort();

const ADDRESS = { name: "Ada", line1: "1 Main St", city: "Berlin", postalCode: "10115", country: "DE" };
const data = tempDir();
let node: TestNode;
const admin = tokenFor("ops", "admin");
const alice = tokenFor("alice");
const bob = tokenFor("bob");
/** Requests whose answers are also checked against the served OpenAPI document. */
let api: CheckedApi;

async function newProduct(price: number, stock: number) {
	const res = await api("POST", "/api/products", { token: admin, body: { sku: `API-${randomUUID().slice(0, 8)}`, name: `Thing ${price}`, category: "api", price, stock } });
	expect(res.status).toBe(201);
	return res.body;
}
async function fundWallet(token: string, amount: number) {
	const res = await api("POST", "/api/wallet/top-ups", { token, body: { amount, cardToken: "tok_visa" }, headers: { "Idempotency-Key": randomUUID() } });
	expect(res.status).toBe(200);
	return res.body;
}
const placeOrder = (token: string, productId: string, quantity = 1, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
	api("POST", "/api/orders", { token, body: { items: [{ productId, quantity }], shippingAddress: ADDRESS, ...extra }, headers });
const untilStatus = (token: string, id: string, status: string) =>
	eventually(`order ${status}`, async () => {
		const res = await api("GET", `/api/orders/${id}`, { token });
		return res.body.status === status && res.body;
	});

beforeAll(async () => {
	node = await startTestNode({ DATA_DIR: data.dir, RATE_LIMIT: "100000", METRICS_PORT: "0", SAGA_STEP_TIMEOUT_MS: "5000" });
	({ api } = await checkedApi(node.url));
});
afterAll(async () => {
	await node?.stop();
	data.remove();
});

describe("the published surface", () => {
	it("registers exactly the contract's routes", async () => {
		const aliases = await node.broker.call<Array<{ methods: string; fullPath: string }>>("gateway.listAliases");
		expect(aliases.map(a => `${a.methods} ${a.fullPath}`).sort()).toEqual(CONTRACT);
	});

	it("documents exactly the registered routes in OpenAPI 3", async () => {
		const res = await api("GET", "/api/openapi.json");
		expect(res.status).toBe(200);
		expect(res.body.openapi).toMatch(/^3\./);
		const documented = Object.entries(res.body.paths as Record<string, Record<string, unknown>>).flatMap(([p, ops]) =>
			Object.keys(ops).map(m => `${m.toUpperCase()} ${p.replace(/\{(\w+)\}/g, ":$1")}`),
		);
		expect(documented.sort()).toEqual(CONTRACT.filter(r => r !== "GET /api/docs/assets/:file"));
		const createOrder = res.body.paths["/api/orders"].post;
		expect(createOrder.requestBody.content["application/json"].schema.required).toEqual(expect.arrayContaining(["items", "shippingAddress"]));
		expect(Object.keys(createOrder.responses)).toEqual(expect.arrayContaining(["201", "200", "400", "401", "409", "422", "429"]));
		expect(res.body.paths["/api/products"].get.security).toEqual([]);
		expect(res.body.paths["/api/analytics/orders"].get["x-access"]).toBe("admin");
		const docs = await api("GET", "/api/docs");
		expect(docs.status).toBe(200);
		expect(docs.headers.get("content-type")).toMatch(/text\/html/);
		expect(docs.text).toContain("/api/orders/{id}/process-payment"); // the table for readers without scripts
		// Swagger UI from this server only: its files are served, and the CSP allows no other script.
		expect(docs.headers.get("content-security-policy")).toMatch(/script-src 'self';/);
		for (const src of [...docs.text.matchAll(/(?:src|href)="(\/api\/docs\/assets\/[^"]+)"/g)].map(m => m[1])) {
			const asset = await http(node.url, "GET", src);
			expect(asset.status).toBe(200);
			expect(asset.headers.get("cache-control")).toMatch(/max-age/);
		}
		expect((await http(node.url, "GET", "/api/docs/assets/swagger-ui-bundle.js")).text).toContain("SwaggerUIBundle");
		expect((await http(node.url, "GET", "/api/docs/assets/..%2Fpackage.json")).status).toBe(404);
	});

	it("publishes none of the services' other actions", async () => {
		for (const path of ["/api/wallet/debit", "/api/inventory/reserve", "/api/order/create", "/api/wallet.credit", "/api/inventory.list", "/api/gateway/orderTimeline"]) {
			const res = await api("POST", path, { token: admin, body: { userId: "x", amount: 1 } });
			expect([404, 405]).toContain(res.status);
			expect(res.body.error.code).toBe("ROUTE_NOT_FOUND");
		}
		expect((await api("PUT", "/api/wallet", { token: alice, body: { balance: 1000000 } })).status).toBe(404);
	});

	it("answers health, metrics and documents without a token", async () => {
		expect((await api("GET", "/health/live")).body).toEqual({ status: "ok" });
		expect((await api("GET", "/health/ready")).status).toBe(200);
		expect((await api("GET", "/api/products")).status).toBe(200);
		expect((await api("GET", "/metrics")).status).toBe(503); // METRICS_PORT=0 here: said plainly
	});
});

describe("authentication and roles", () => {
	const userRoutes: Array<[string, string]> = [
		["GET", "/api/wallet"],
		["GET", "/api/orders"],
		["POST", "/api/cart/validate"],
		["GET", "/api/vouchers"],
		["GET", "/api/notifications"],
		["GET", `/api/orders/${randomUUID()}`],
	];
	const adminRoutes: Array<[string, string]> = [
		["POST", "/api/products"],
		["PATCH", `/api/products/${randomUUID()}`],
		["POST", `/api/inventory/${randomUUID()}/restock`],
		["GET", "/api/inventory"],
		["POST", `/api/orders/${randomUUID()}/dispatch`],
		["POST", `/api/orders/${randomUUID()}/deliver`],
		["POST", "/api/admin/wallets/alice/adjustments"],
		["GET", "/api/analytics/orders"],
		["POST", "/api/promotions"],
		["GET", "/api/promotions"],
		["GET", "/api/admin/nodes"],
		["GET", "/api/admin/stuck-orders"],
		["GET", "/api/admin/dead-letters"],
		["POST", "/api/admin/dead-letters/notification/1/replay"],
		["GET", "/api/admin/outbox"],
	];

	it.each([...userRoutes, ...adminRoutes])("answers %s %s with 401 without a token", async (method, path) => {
		const res = await api(method, path, method === "GET" ? {} : { body: {} });
		expect(res.status).toBe(401);
		expect(res.body).toEqual({ error: { code: "UNAUTHORIZED", message: expect.any(String) } });
	});

	it.each(adminRoutes)("answers a customer's %s %s with 403", async (method, path) => {
		const res = await api(method, path, { token: alice, ...(method === "GET" ? {} : { body: {} }) });
		expect(res.status).toBe(403);
		expect(res.body.error.code).toBe("FORBIDDEN");
	});

	it.each([
		["tampered", alice.slice(0, -3) + (alice.endsWith("abc") ? "xyz" : "abc")],
		["expired", jwt.sign({ sub: "alice", role: "customer", exp: Math.floor(Date.now() / 1000) - 60 }, DEV_JWT_SECRET)],
		["signed with another secret", tokenFor("alice", "customer", "another-secret-of-enough-length")],
		["signed with none", jwt.sign({ sub: "alice", role: "customer" }, "", { algorithm: "none" })],
		["without a role", jwt.sign({ sub: "alice" }, DEV_JWT_SECRET)],
		["with an unknown role", jwt.sign({ sub: "alice", role: "root" }, DEV_JWT_SECRET)],
		["not a JWT", "hello"],
	])("refuses a token that is %s with 401", async (_what, token) => {
		const res = await api("GET", "/api/wallet", { token });
		expect(res.status).toBe(401);
		expect(res.body.error.code).toBe("UNAUTHORIZED");
	});
});

describe("the operations console's routes and the development sign-in", () => {
	it("shows an admin the nodes, stuck orders, dead letters and outbox backlogs", async () => {
		const nodes = await api("GET", "/api/admin/nodes", { token: admin });
		expect(nodes.status).toBe(200);
		expect(nodes.body).toEqual([expect.objectContaining({ nodeID: node.broker.nodeID, status: "ok", services: expect.arrayContaining(["order", "payment", "gateway"]) })]);
		const outbox = await api("GET", "/api/admin/outbox", { token: admin });
		expect(outbox.body.map((o: { service: string }) => o.service)).toEqual(expect.arrayContaining(["order", "inventory", "payment"]));
		expect(outbox.body.every((o: { unpublished: number }) => Number.isInteger(o.unpublished))).toBe(true);
		expect((await api("GET", "/api/admin/dead-letters", { token: admin })).body).toEqual(expect.any(Array));
		expect((await api("GET", "/api/admin/stuck-orders?olderThanSeconds=3600", { token: admin })).body).toEqual(expect.any(Array));
	});

	it("replays only a dead letter of a service that keeps them (404 otherwise)", async () => {
		expect((await api("POST", "/api/admin/dead-letters/notification/999999/replay", { token: admin })).status).toBe(404);
		const unknown = await api("POST", "/api/admin/dead-letters/nosuchservice/1/replay", { token: admin });
		expect(unknown.status).toBe(404);
		expect((await api("POST", "/api/admin/dead-letters/Not-A-Service/1/replay", { token: admin })).status).toBe(400);
	});

	it("mints a development token for a name and role, refusing a bad name", async () => {
		const minted = await api("POST", "/api/dev/token", { body: { sub: "zed", role: "admin" } });
		expect(minted.status).toBe(200);
		expect(minted.body).toMatchObject({ sub: "zed", role: "admin", expiresIn: 43200 });
		expect((await api("GET", "/api/analytics/orders", { token: minted.body.token })).status).toBe(200);
		expect((await api("POST", "/api/dev/token", { body: { sub: "zed" } })).body.role).toBe("customer");
		expect((await api("POST", "/api/dev/token", { body: { sub: "a b<script>" } })).status).toBe(400);
	});
});

describe("a full checkout over HTTP", () => {
	it("creates a product, funds a wallet, orders, confirms, dispatches, issues a voucher, notifies, delivers", async () => {
		const product = await newProduct(6000, 10);
		expect(product).toMatchObject({ price: 6000, currency: "EUR", available: 10 });
		expect((await api("GET", `/api/products/${product.id}`)).body).toMatchObject({ id: product.id, sku: product.sku });
		expect(await fundWallet(alice, 20000)).toEqual({ userId: "alice", balance: 20000, currency: "EUR" });

		const check = await api("POST", "/api/cart/validate", { token: alice, body: { items: [{ productId: product.id, quantity: 2, price: 6000 }], promoCodes: ["PROMO10"] } });
		expect(check.status).toBe(200);
		expect(check.body).toMatchObject({ valid: true, subtotal: 12000, discount: 1200, total: 10800 });

		const created = await placeOrder(alice, product.id, 2, { promoCodes: ["PROMO10"], payment: { method: "WALLET" } });
		expect(created.status).toBe(201);
		expect(created.body).toMatchObject({ status: "CREATED", total: 10800, userId: "alice" });
		const id = created.body.id;
		expect(created.headers.get("location")).toBe(`/api/orders/${id}`);
		const confirmed = await untilStatus(alice, id, "CONFIRMED");
		expect(confirmed.statusHistory.map((h: any) => h.status)).toEqual(["CREATED", "PAYMENT_PENDING", "PAYMENT_SUCCESS", "CONFIRMED"]);
		expect((await api("GET", "/api/wallet", { token: alice })).body.balance).toBe(20000 - 10800);

		const dispatched = await api("POST", `/api/orders/${id}/dispatch`, { token: admin, body: { courier: "DHL", trackingNumber: "JD0001" } });
		expect(dispatched.status).toBe(200);
		expect(dispatched.body.status).toBe("DISPATCHED");
		const vouchers = await eventually("a voucher", async () => {
			const res = await api("GET", "/api/vouchers", { token: alice });
			return res.body.total === 1 && res.body;
		});
		expect(vouchers.rows[0]).toMatchObject({ amount: 500, status: "ACTIVE", orderId: id, code: expect.stringMatching(/^VCH-/) });
		const notes = await eventually("notifications", async () => {
			const res = await api("GET", "/api/notifications", { token: alice });
			return res.body.total >= 5 && res.body;
		});
		expect(notes.rows.map((n: any) => n.title)).toEqual(expect.arrayContaining(["Order placed", "Payment received", "Order confirmed", "Order dispatched", "A voucher for you"]));
		const read = await api("PUT", `/api/notifications/${notes.rows[0].id}/read`, { token: alice });
		expect(read.status).toBe(200);
		expect(read.body.isRead).toBe(true);
		expect((await api("GET", "/api/notifications?unread=true", { token: alice })).body.total).toBe(notes.total - 1);

		const timeline = await api("GET", `/api/orders/${id}/timeline`, { token: alice });
		expect(timeline.status).toBe(200);
		expect(timeline.body.map((e: any) => e.eventName)).toEqual(expect.arrayContaining(["order.created", "stock.reserved", "payment.authorized", "stock.committed", "order.confirmed", "order.dispatched"]));
		expect(timeline.body[0]).toEqual({ eventId: expect.any(String), eventName: "order.created", occurredAt: expect.any(String), producer: { service: "order", nodeID: expect.any(String) }, data: expect.any(Object) });

		expect((await api("POST", `/api/orders/${id}/deliver`, { token: admin })).body.status).toBe("COMPLETED");
		expect((await api("POST", `/api/orders/${id}/cancel`, { token: alice })).status).toBe(409);

		const ledger = await api("GET", "/api/wallet/transactions", { token: alice });
		expect(ledger.body.rows.map((r: any) => [r.type, r.reason, r.amount])).toEqual([
			["DEBIT", "PAYMENT", 10800],
			["CREDIT", "TOP_UP", 20000],
		]);
		const analytics = await api("GET", "/api/analytics/orders", { token: admin });
		expect(analytics.status).toBe(200);
		expect(analytics.body).toMatchObject({ currency: "EUR", successfulOrders: expect.any(Number), totalRevenue: expect.any(Number) });
		expect(analytics.body.totalRevenue).toBeGreaterThanOrEqual(10800);
	});

	it("waits for process-payment, answers 422 on a decline, 409 when not payable", async () => {
		const product = await newProduct(500, 5);
		const created = await placeOrder(alice, product.id);
		await untilStatus(alice, created.body.id, "PAYMENT_PENDING");
		const declined = await placeOrder(alice, product.id);
		await untilStatus(alice, declined.body.id, "PAYMENT_PENDING");
		const refused = await api("POST", `/api/orders/${declined.body.id}/process-payment`, { token: alice, body: { method: "CARD", cardToken: "tok_chargeDeclined" } });
		expect(refused.status).toBe(422);
		expect(refused.body.error.code).toBe("PAYMENT_DECLINED");
		expect((await api("GET", `/api/orders/${declined.body.id}`, { token: alice })).body.status).toBe("PAYMENT_FAILED");

		const paid = await api("POST", `/api/orders/${created.body.id}/process-payment`, { token: alice, body: { method: "CARD", cardToken: "tok_visa" } });
		expect(paid.status).toBe(200);
		// Paid: the order as read once the payment settled, which the saga may have confirmed already.
		expect(paid.body).toMatchObject({ success: true, order: { id: created.body.id, status: expect.stringMatching(/^(PAYMENT_SUCCESS|CONFIRMED)$/) } });
		const again = await api("POST", `/api/orders/${created.body.id}/process-payment`, { token: alice, body: { method: "WALLET" } });
		expect(again.status).toBe(409);
	});

	it("cancels before dispatch with a refund", async () => {
		const product = await newProduct(700, 5);
		await fundWallet(bob, 700);
		const created = await placeOrder(bob, product.id, 1, { payment: { method: "WALLET" } });
		await untilStatus(bob, created.body.id, "CONFIRMED");
		const cancelled = await api("POST", `/api/orders/${created.body.id}/cancel`, { token: bob, body: { reason: "changed my mind" } });
		expect(cancelled.status).toBe(200);
		expect(cancelled.body.status).toBe("CANCELLED");
		await eventually("the refund", async () => (await api("GET", "/api/wallet", { token: bob })).body.balance === 700);
	});

	it("refuses an invalid cart with 422 and its errors, and lets an admin adjust a wallet", async () => {
		const product = await newProduct(100, 1);
		const res = await placeOrder(alice, product.id, 2);
		expect(res.status).toBe(422);
		expect(res.body.error).toMatchObject({ code: "CART_INVALID", details: { errors: [expect.objectContaining({ code: "INSUFFICIENT_STOCK", productId: product.id })] } });
		const adjusted = await api("POST", "/api/admin/wallets/carol/adjustments", { token: admin, body: { amount: 250, reason: "goodwill" } });
		expect(adjusted.body).toEqual({ userId: "carol", balance: 250, currency: "EUR" });
		expect((await api("POST", "/api/admin/wallets/carol/adjustments", { token: admin, body: { amount: -251, reason: "too much" } })).status).toBe(422);
	});

	it("manages products, stock and promotions as an admin", async () => {
		const product = await newProduct(100, 1);
		const patched = await api("PATCH", `/api/products/${product.id}`, { token: admin, body: { price: 150, name: "Renamed" } });
		expect(patched.body).toMatchObject({ price: 150, name: "Renamed" });
		const restocked = await api("POST", `/api/inventory/${product.id}/restock`, { token: admin, body: { quantity: 4 } });
		expect(restocked.body).toMatchObject({ productId: product.id, onHand: 5, available: 5 });
		const levels = await api("GET", "/api/inventory?pageSize=100", { token: admin });
		expect(levels.body.rows.find((r: any) => r.productId === product.id)).toMatchObject({ onHand: 5 });
		const promo = await api("POST", "/api/promotions", { token: admin, body: { code: "API5", type: "FIXED", value: 500, maxRedemptions: 10 } });
		expect(promo.status).toBe(201);
		expect((await api("POST", "/api/promotions", { token: admin, body: { code: "API5", type: "FIXED", value: 1 } })).status).toBe(409);
		expect((await api("GET", "/api/promotions", { token: admin })).body.rows.map((p: any) => p.code)).toEqual(expect.arrayContaining(["API5", "PROMO10"]));
		expect((await api("GET", `/api/products/${randomUUID()}`)).status).toBe(404);
		expect((await api("GET", "/api/products?category=api&sort=-price&pageSize=2")).body).toMatchObject({ page: 1, pageSize: 2 });
	});

	it("lists every active product's category with its count, however many products come before it", async () => {
		const tag = randomUUID().slice(0, 6);
		// Named to sort after the first page of products by name: a filter built from that page missed them.
		const create = (category: string, name: string) => api("POST", "/api/products", { token: admin, body: { sku: `CAT-${randomUUID().slice(0, 8)}`, name, category, price: 100, stock: 1 } });
		for (let i = 0; i < 3; i++) expect((await create(`zz-${tag}-b`, `zzz ${tag} ${i}`)).status).toBe(201);
		expect((await create(`zz-${tag}-a`, `zzz ${tag} x`)).status).toBe(201);
		const hidden = (await create(`zz-${tag}-c`, `zzz ${tag} hidden`)).body;
		expect((await api("PATCH", `/api/products/${hidden.id}`, { token: admin, body: { active: false } })).status).toBe(200);
		const all: Array<{ name: string; products: number }> = [];
		for (let page = 1; ; page++) {
			const res = await api("GET", `/api/categories?page=${page}&pageSize=100`);
			expect(res.status).toBe(200);
			all.push(...res.body.rows);
			if (page >= res.body.totalPages) break;
		}
		expect(all.filter(c => c.name.startsWith(`zz-${tag}`))).toEqual([
			{ name: `zz-${tag}-a`, products: 1 },
			{ name: `zz-${tag}-b`, products: 3 },
		]); // by name; a category of inactive products only is not offered
		expect(all.map(c => c.name)).toEqual([...all.map(c => c.name)].sort());
		expect((await api("GET", "/api/categories?pageSize=1000")).status).toBe(400);
	});
});

describe("customers' isolation", () => {
	it("keeps one customer out of another's orders, timeline, stream and notifications", async () => {
		const product = await newProduct(300, 5);
		const hers = await placeOrder(alice, product.id);
		const id = hers.body.id;
		for (const [method, path] of [
			["GET", `/api/orders/${id}`],
			["GET", `/api/orders/${id}/timeline`],
			["GET", `/api/orders/${id}/stream`],
			["POST", `/api/orders/${id}/cancel`],
			["POST", `/api/orders/${id}/process-payment`],
		]) {
			const res = await api(method, path, { token: bob, ...(method === "POST" ? { body: path.endsWith("payment") ? { method: "WALLET" } : {} } : {}) });
			expect(res.status).toBe(404);
		}
		expect((await api("GET", "/api/orders?pageSize=100", { token: bob })).body.rows.every((o: any) => o.userId === "bob")).toBe(true);
		expect((await api("GET", "/api/orders?userId=alice", { token: bob })).body.rows.every((o: any) => o.userId === "bob")).toBe(true);
		const herNote = await eventually("alice's notification", async () => (await api("GET", "/api/notifications", { token: alice })).body.rows[0]);
		expect((await api("PUT", `/api/notifications/${herNote.id}/read`, { token: bob })).status).toBe(404);
		expect((await api("GET", `/api/orders/${id}`, { token: admin })).status).toBe(200);
		expect((await api("GET", "/api/orders?userId=alice", { token: admin })).body.rows.every((o: any) => o.userId === "alice")).toBe(true);
		// A body's userId never speaks for the caller.
		const sneaky = await api("POST", "/api/cart/validate", { token: bob, body: { items: [{ productId: product.id, quantity: 1 }], userId: "alice" } });
		expect(sneaky.status).toBe(200);
		expect((await api("GET", "/api/wallet", { token: bob, headers: {} })).body.userId).toBe("bob");
	});
});

describe("idempotency", () => {
	it("answers the same key and body with the same order (200), another body with 409", async () => {
		const product = await newProduct(200, 10);
		const key = randomUUID();
		const first = await placeOrder(alice, product.id, 1, {}, { "Idempotency-Key": key });
		const again = await placeOrder(alice, product.id, 1, {}, { "Idempotency-Key": key });
		expect([first.status, again.status]).toEqual([201, 200]);
		expect(again.body.id).toBe(first.body.id);
		expect(again.body.replayed).toBeUndefined();
		const other = await placeOrder(alice, product.id, 2, {}, { "Idempotency-Key": key });
		expect(other.status).toBe(409);
		expect(other.body.error.code).toBe("IDEMPOTENCY_KEY_REUSED");
		const bobs = await placeOrder(bob, product.id, 1, {}, { "Idempotency-Key": key }); // keys are per user
		expect(bobs.status).toBe(201);
	});

	it("keeps the contract for orders placed at once (written in groups): one order per key, a reused key refused alone", async () => {
		const product = await newProduct(200, 100);
		const key = randomUUID();
		const reused = randomUUID();
		await placeOrder(alice, product.id, 1, {}, { "Idempotency-Key": reused });
		const answers = await Promise.all([
			...Array.from({ length: 12 }, () => placeOrder(alice, product.id, 1)),
			placeOrder(alice, product.id, 3, {}, { "Idempotency-Key": key }),
			placeOrder(alice, product.id, 3, {}, { "Idempotency-Key": key }),
			placeOrder(alice, product.id, 2, {}, { "Idempotency-Key": reused }), // another body: 409, and only this one
			...Array.from({ length: 12 }, () => placeOrder(alice, product.id, 1)),
		]);
		const plain = [...answers.slice(0, 12), ...answers.slice(15)];
		expect(plain.map(a => a.status)).toEqual(Array(24).fill(201));
		expect(new Set(plain.map(a => a.body.id)).size).toBe(24);
		const [k1, k2, other] = answers.slice(12, 15);
		expect([k1.status, k2.status].sort()).toEqual([200, 201]);
		expect(k1.body.id).toBe(k2.body.id);
		expect(other.status).toBe(409);
		expect(other.body.error.code).toBe("IDEMPOTENCY_KEY_REUSED");
		for (const a of plain) expect((await api("GET", `/api/orders/${a.body.id}`, { token: alice })).body.statusHistory[0].status).toBe("CREATED");
	});

	it("tops up once per key, and refuses the key with another body", async () => {
		const key = randomUUID();
		const before = (await api("GET", "/api/wallet", { token: tokenFor("dora") })).body.balance;
		const dora = tokenFor("dora");
		const a = await api("POST", "/api/wallet/top-ups", { token: dora, body: { amount: 300, cardToken: "tok_visa" }, headers: { "Idempotency-Key": key } });
		const b = await api("POST", "/api/wallet/top-ups", { token: dora, body: { amount: 300, cardToken: "tok_visa" }, headers: { "Idempotency-Key": key } });
		expect([a.status, b.status]).toEqual([200, 200]);
		expect(b.body.balance).toBe(before + 300);
		expect((await api("POST", "/api/wallet/top-ups", { token: dora, body: { amount: 301, cardToken: "tok_visa" }, headers: { "Idempotency-Key": key } })).status).toBe(409);
		expect((await api("POST", "/api/wallet/top-ups", { token: dora, body: { amount: 300, cardToken: "tok_chargeDeclined" } })).status).toBe(422);
	});
});

describe("request handling", () => {
	it("answers malformed input with 400 and field details, never 500", async () => {
		const res = await api("POST", "/api/orders", { token: alice, body: { items: [{ productId: 5, quantity: "two" }] } });
		expect(res.status).toBe(400);
		expect(res.body.error.code).toBe("VALIDATION_ERROR");
		expect(res.body.error.details.fields.map((f: any) => f.field)).toEqual(expect.arrayContaining(["items[0].productId", "items[0].quantity", "shippingAddress"]));
		expect((await api("POST", "/api/orders", { token: alice, raw: "{not json", headers: { "Content-Type": "application/json" } })).body.error.code).toBe("INVALID_JSON");
		const form = await api("POST", "/api/orders", { token: alice, raw: "items=1", headers: { "Content-Type": "application/x-www-form-urlencoded" } });
		expect(form.status).toBe(415);
		const huge = await api("POST", "/api/orders", { token: alice, raw: JSON.stringify({ pad: "x".repeat(70000) }), headers: { "Content-Type": "application/json" } });
		expect(huge.status).toBe(413);
		expect(huge.body.error.code).toBe("PAYLOAD_TOO_LARGE");
		expect((await api("GET", "/api/orders/not-a-uuid", { token: alice })).status).toBe(400);
		expect((await api("GET", "/api/products?pageSize=1000")).status).toBe(400);
	});

	it("echoes a sane X-Request-ID, replaces an unsafe one, makes one when missing, and sets security headers", async () => {
		const given = await api("GET", "/api/products", { headers: { "X-Request-ID": "trace-123" } });
		expect(given.headers.get("x-request-id")).toBe("trace-123");
		const unsafe = await api("GET", "/api/products", { headers: { "X-Request-ID": "bad id with spaces" } });
		expect(unsafe.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
		const none = await api("GET", "/api/wallet", { token: alice });
		expect(none.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
		const error = await api("GET", "/api/wallet", { headers: { "X-Request-ID": "err-1" } });
		expect(error.headers.get("x-request-id")).toBe("err-1");
		for (const res of [given, none, error]) {
			expect(res.headers.get("x-content-type-options")).toBe("nosniff");
			expect(res.headers.get("x-frame-options")).toBe("DENY");
			expect(res.headers.get("cache-control")).toBe("no-store");
		}
	});
});

describe("live tracking", () => {
	it("streams the order at once, then every transition in order", async () => {
		const product = await newProduct(400, 5);
		await fundWallet(tokenFor("sse"), 400);
		const sse = tokenFor("sse");
		const created = await placeOrder(sse, product.id);
		const id = created.body.id;
		await untilStatus(sse, id, "PAYMENT_PENDING");
		const streaming = readEvents(`${node.url}/api/orders/${id}/stream`, sse, events => events.some(e => e.data.status === "CONFIRMED"));
		await new Promise(r => setTimeout(r, 300));
		await api("POST", `/api/orders/${id}/process-payment`, { token: sse, body: { method: "WALLET" } });
		const { status, events, contentType } = await streaming;
		expect(status).toBe(200);
		expect(contentType).toMatch(/text\/event-stream/);
		expect(events[0]).toMatchObject({ event: "order", data: { id, status: "PAYMENT_PENDING" } });
		expect(events.slice(1).map(e => [e.event, e.data.status])).toEqual([
			["status", "PAYMENT_SUCCESS"],
			["status", "CONFIRMED"],
		]);
	});

	it("starts a stream opened right after the order was placed from the create answer and the transitions since, without reading the order", async () => {
		const product = await newProduct(400, 5);
		const dan = tokenFor("dan");
		await fundWallet(dan, 400);
		const orderReads = () =>
			node.broker.metrics
				.list({ includes: "moleculer.request.total" })
				// The values are the metric's snapshot, an array (moleculer's typings say a Map).
				.flatMap(m => m.values as unknown as Array<{ labels: Record<string, string>; value: number }>)
				.filter(v => v.labels.action === "order.get")
				.reduce((sum, v) => sum + v.value, 0);
		const before = orderReads();
		const created = await placeOrder(dan, product.id, 1, { payment: { method: "WALLET" } });
		const { events } = await readEvents(`${node.url}/api/orders/${created.body.id}/stream`, dan, evs => evs.some(e => e.data.status === "CONFIRMED"));
		const statuses = [...events[0].data.statusHistory.map((s: { status: string }) => s.status), ...events.slice(1).map(e => e.data.status)];
		expect(statuses).toEqual(["CREATED", "PAYMENT_PENDING", "PAYMENT_SUCCESS", "CONFIRMED"]);
		expect(orderReads()).toBe(before);
		// Another customer's stream of it is still "not found", whatever this gateway remembers.
		expect((await api("GET", `/api/orders/${created.body.id}/stream`, { token: tokenFor("eve") })).status).toBe(404);
	});

	it("answers an order and its history as of one moment, so a stream opened while the saga runs misses no transition", async () => {
		const product = await newProduct(10, 100);
		const carol = tokenFor("carol");
		const declined = { payment: { method: "CARD", cardToken: "tok_chargeDeclined" } };
		const placed = await Promise.all(Array.from({ length: 12 }, () => placeOrder(carol, product.id, 1, declined)));
		const orderOf = (e: { event: string; data: any }) => (e.event === "order" ? e.data : e.data.order);
		const streams = await Promise.all(
			placed.map(p => readEvents(`${node.url}/api/orders/${p.body.id}/stream`, carol, events => events.some(e => orderOf(e).status === "PAYMENT_FAILED"))),
		);
		for (const { events } of streams) {
			for (const order of events.map(orderOf)) expect(order.statusHistory.at(-1).status).toBe(order.status);
			expect(orderOf(events.at(-1)!).payment.failureReason).toBe("card_declined");
		}
	});
});

describe("fuzz: malformed writes", () => {
	const BAD: unknown[] = [null, true, 0, -1, 1.5, 1e308, -1e308, "", " ", "x".repeat(5000), "💥🔥", "\u0000", "漢字", [], [1, 2], {}, { $gt: "" }, "<script>alert(1)</script>", "' OR 1=1 --", "NaN", "Infinity", Number("9007199254740993") /* past 2^53 */, -0.0001];
	const uuid = randomUUID();

	it("answers 500+ malformed requests with 4xx and the error shape, and changes nothing", async () => {
		const product = await newProduct(100, 3);
		const order = (await placeOrder(alice, product.id)).body;
		const snapshot = async () => ({
			products: (await api("GET", "/api/inventory?pageSize=100", { token: admin })).body,
			orders: (await api("GET", "/api/orders?pageSize=100", { token: admin })).body.total,
			wallet: (await api("GET", "/api/wallet/transactions?pageSize=100", { token: alice })).body,
			promotions: (await api("GET", "/api/promotions?pageSize=100", { token: admin })).body,
			order: (await api("GET", `/api/orders/${order.id}`, { token: admin })).body.statusHistory.length,
		});
		await untilStatus(alice, order.id, "PAYMENT_PENDING");
		const before = await snapshot();

		// Each body keeps one field that is always invalid (the anchor), so no request can succeed
		// whatever the fuzzed field holds; the fuzzed field then takes every bad value.
		const routes: Array<{ method: string; path: string; token: string; body: Record<string, unknown>; anchor: string }> = [
			{ method: "POST", path: "/api/products", token: admin, anchor: "price", body: { sku: "F-1", name: "F", description: "d", category: "c", price: "free", currency: "EUR", imageUrl: "https://x.io/a.png", stock: 1 } },
			{ method: "PATCH", path: `/api/products/${product.id}`, token: admin, anchor: "price", body: { name: "N", description: "d", category: "c", price: -5, imageUrl: "https://x.io/a.png", active: true } },
			{ method: "POST", path: `/api/inventory/${product.id}/restock`, token: admin, anchor: "", body: { quantity: 0 } },
			{ method: "POST", path: "/api/cart/validate", token: alice, anchor: "items", body: { items: "x", promoCodes: ["PROMO10"], voucherCodes: [] } },
			{ method: "POST", path: "/api/orders", token: alice, anchor: "shippingAddress", body: { items: [{ productId: product.id, quantity: 1 }], promoCodes: [], voucherCodes: [], shippingAddress: "nowhere", customer: { name: "n" }, payment: { method: "WALLET" } } },
			{ method: "POST", path: `/api/orders/${order.id}/process-payment`, token: alice, anchor: "method", body: { method: "CASH", cardToken: "tok_visa" } },
			{ method: "POST", path: `/api/orders/${order.id}/dispatch`, token: admin, anchor: "courier", body: { courier: 42, trackingNumber: "T" } },
			{ method: "POST", path: "/api/wallet/top-ups", token: alice, anchor: "amount", body: { amount: "lots", cardToken: "tok_visa" } },
			{ method: "POST", path: "/api/admin/wallets/alice/adjustments", token: admin, anchor: "amount", body: { amount: 0, reason: "r" } },
			{ method: "POST", path: "/api/promotions", token: admin, anchor: "type", body: { code: "FUZZ", type: "BOGO", value: 1, minSubtotal: 0, startsAt: "2030-01-01", endsAt: "2031-01-01", maxRedemptions: 1 } },
		];
		const requests: Array<{ method: string; path: string; token: string; raw?: string; body?: unknown; headers?: Record<string, string> }> = [];
		for (const r of routes) {
			for (const field of Object.keys(r.body).filter(f => f !== r.anchor)) {
				for (const value of BAD) {
					if (r.anchor === "" && typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= 1e6) continue;
					requests.push({ method: r.method, path: r.path, token: r.token, body: { ...r.body, [field]: value } });
				}
			}
			requests.push({ method: r.method, path: r.path, token: r.token, raw: "{", headers: { "Content-Type": "application/json" } });
			requests.push({ method: r.method, path: r.path, token: r.token, raw: '{"a":', headers: { "Content-Type": "application/json" } });
			requests.push({ method: r.method, path: r.path, token: r.token, raw: "[]", headers: { "Content-Type": "application/json" } });
			requests.push({ method: r.method, path: r.path, token: r.token, raw: '"string"', headers: { "Content-Type": "application/json" } });
			requests.push({ method: r.method, path: r.path, token: r.token, raw: JSON.stringify({ ...r.body, pad: "é".repeat(40000) }), headers: { "Content-Type": "application/json" } });
			requests.push({ method: r.method, path: r.path, token: r.token, raw: "a=1", headers: { "Content-Type": "text/plain" } });
		}
		for (const bad of ["not-a-uuid", "%E2%98%83", "1", "../../etc/passwd", "' OR 1=1"]) {
			requests.push({ method: "POST", path: `/api/orders/${bad}/deliver`, token: admin });
			requests.push({ method: "POST", path: `/api/orders/${bad}/cancel`, token: alice, body: {} });
			requests.push({ method: "PUT", path: `/api/notifications/${bad}/read`, token: alice });
			requests.push({ method: "POST", path: `/api/inventory/${bad}/restock`, token: admin, body: { quantity: 1.5 } });
			requests.push({ method: "PATCH", path: `/api/products/${bad}`, token: admin, body: { price: "x" } });
		}
		requests.push({ method: "POST", path: `/api/orders/${uuid}/deliver`, token: admin });
		expect(requests.length).toBeGreaterThanOrEqual(500);

		const failures: string[] = [];
		for (let i = 0; i < requests.length; i += 25) {
			await Promise.all(
				requests.slice(i, i + 25).map(async r => {
					const res = await api(r.method, r.path, { token: r.token, body: r.body, raw: r.raw, headers: r.headers });
					const shaped = typeof res.body?.error?.code === "string" && typeof res.body?.error?.message === "string";
					if (res.status < 400 || res.status >= 500 || !shaped) failures.push(`${r.method} ${r.path} ${JSON.stringify(r.body ?? r.raw).slice(0, 120)} → ${res.status} ${res.text.slice(0, 200)}`);
				}),
			);
		}
		expect(failures).toEqual([]);
		expect(await snapshot()).toEqual(before);
	});
});

describe("rate limits and CORS", () => {
	let limited: TestNode;
	const limitedData = tempDir();
	beforeAll(async () => {
		limited = await startTestNode({ DATA_DIR: limitedData.dir, SERVICES: "gateway,wallet", RATE_LIMIT: "5", RATE_LIMIT_WINDOW_MS: "60000", CORS_ORIGINS: "https://shop.example.com" });
	});
	afterAll(async () => {
		await limited?.stop();
		limitedData.remove();
	});

	it("answers 429 with Retry-After past the limit, per user", async () => {
		const statuses: number[] = [];
		let last: HttpResult | undefined;
		for (let i = 0; i < 7; i++) {
			last = await http(limited.url, "GET", "/api/wallet", { token: tokenFor("greedy") });
			statuses.push(last.status);
		}
		expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429]);
		expect(last!.body.error.code).toBe("RATE_LIMITED");
		expect(Number(last!.headers.get("retry-after"))).toBeGreaterThan(0);
		expect((await http(limited.url, "GET", "/api/wallet", { token: tokenFor("modest") })).status).toBe(200);
	});

	it("answers CORS preflights for the configured origins only", async () => {
		const ok = await fetch(`${limited.url}/api/wallet`, { method: "OPTIONS", headers: { Origin: "https://shop.example.com", "Access-Control-Request-Method": "GET" } });
		expect(ok.headers.get("access-control-allow-origin")).toBe("https://shop.example.com");
		const other = await fetch(`${limited.url}/api/wallet`, { method: "OPTIONS", headers: { Origin: "https://evil.example.com", "Access-Control-Request-Method": "GET" } });
		expect(other.headers.get("access-control-allow-origin")).toBeNull();
	});
});
