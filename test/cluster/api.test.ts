/**
 * The gateway on nodes of its own: live tracking follows an order whose service runs elsewhere,
 * and two gateway nodes share one rate limit through Redis.
 */
import { randomUUID } from "node:crypto";
import Redis from "ioredis";
import { RedisRateStore } from "../../lib/api/rate-limit";
import { eventually, freePort } from "../../scripts/harness/node";
import { startCluster, waitForActionsOn, type TestCluster } from "../../scripts/harness/cluster";
import { http, readEvents, tokenFor } from "../../scripts/harness/http";

const ADDRESS = { name: "N", line1: "L", city: "C", postalCode: "P", country: "DE" };
let cluster: TestCluster;
let gw1: string;
let gw2: string;

beforeAll(async () => {
	const [p1, p2] = [await freePort(), await freePort()];
	gw1 = `http://127.0.0.1:${p1}`;
	gw2 = `http://127.0.0.1:${p2}`;
	cluster = await startCluster(
		[
			{ name: "gateway-1", env: { SERVICES: "gateway", PORT: String(p1) } },
			{ name: "gateway-2", env: { SERVICES: "gateway", PORT: String(p2) } },
			{ name: "services", env: { SERVICES: "order,validation,inventory,payment,wallet,voucher,notification,audit" } },
		],
		{ RATE_LIMIT: "8", RATE_LIMIT_WINDOW_MS: "60000" },
	);
	// A gateway that started before the services node learns of it by the next heartbeat.
	for (const nodeID of ["gateway-1", "gateway-2"]) {
		await waitForActionsOn(cluster.client, nodeID, ["inventory.create", "order.create", "order.processPayment", "wallet.get"]);
	}
}, 120000);
afterAll(() => cluster?.stop());

it("streams every transition of an order through a gateway node that does not run the order service", async () => {
	const admin = tokenFor("ops", "admin");
	const user = tokenFor("streamer");
	const product = await http(gw1, "POST", "/api/products", { token: admin, body: { sku: "SSE-1", name: "Live", category: "x", price: 900, stock: 3 } });
	expect(product.status).toBe(201);
	await cluster.call("wallet.credit", { userId: "streamer", amount: 900, reason: "TOP_UP", idempotencyKey: randomUUID() });
	const created = await http(gw1, "POST", "/api/orders", { token: user, body: { items: [{ productId: product.body.id, quantity: 1 }], shippingAddress: ADDRESS } });
	expect(created.status).toBe(201);
	const id = created.body.id;
	await eventually("PAYMENT_PENDING", async () => (await cluster.call("order.get", { orderId: id })).status === "PAYMENT_PENDING");

	const streaming = readEvents(`${gw2}/api/orders/${id}/stream`, user, events => events.some(e => e.data.status === "CONFIRMED"), 30000);
	await new Promise(r => setTimeout(r, 500));
	const paid = await http(gw1, "POST", `/api/orders/${id}/process-payment`, { token: user, body: { method: "WALLET" } });
	expect(paid.status).toBe(200);
	const { events } = await streaming;
	expect(events[0]).toMatchObject({ event: "order", data: { id, status: "PAYMENT_PENDING" } });
	expect(events.slice(1).map(e => e.data.status)).toEqual(["PAYMENT_SUCCESS", "CONFIRMED"]);
});

it("counts one user's requests across both gateway nodes in one window", async () => {
	const user = tokenFor("greedy");
	const statuses: number[] = [];
	for (let i = 0; i < 10; i++) statuses.push((await http(i % 2 ? gw2 : gw1, "GET", "/api/wallet", { token: user })).status);
	expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 429, 429]);
	const limited = await http(gw1, "GET", "/api/wallet", { token: user });
	expect(limited.headers.get("retry-after")).toMatch(/^\d+$/);
	expect((await http(gw2, "GET", "/api/wallet", { token: tokenFor("someone-else") })).status).toBe(200);
});

it("counts hits sent together exactly once each, and starts a new window when one ends", async () => {
	const redis = new Redis(cluster.env.REDIS_URL, { enableAutoPipelining: true });
	const store = new RedisRateStore(redis, `test:rate:${randomUUID()}:`);
	try {
		// Issued in one turn: one pipelined write, one script run per hit.
		const hits = await Promise.all(Array.from({ length: 20 }, () => store.hit("user", 400)));
		expect(hits.map(h => h.count).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
		for (const h of hits) {
			expect(h.resetInMs).toBeGreaterThan(0);
			expect(h.resetInMs).toBeLessThanOrEqual(400);
		}
		await new Promise(r => setTimeout(r, 500));
		expect(await store.hit("user", 400)).toMatchObject({ count: 1 });
		expect(await store.hit("other", 400)).toMatchObject({ count: 1 });
	} finally {
		redis.disconnect();
	}
});
