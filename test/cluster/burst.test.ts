/**
 * A flash sale on the local cluster's layout (gateway; order+validation+voucher;
 * inventory+payment+wallet; notification+audit): 1,000 wallet orders posted back to back over HTTP,
 * none waiting for its saga. Every one settles CONFIRMED while the backlog is worked off, and SPEC
 * section 9 holds: no lost order, no double debit, stock and money conserved.
 *
 * The bound on settling is liveness, not speed: before the consumers heartbeat per record, the
 * inventory consumer was evicted mid-batch, kafkajs gave it up for good, and the watchdog alone
 * settled the backlog at about 4 orders/s (4 minutes for this test).
 */
import { Client } from "pg";
import { freePort, eventually } from "../../scripts/harness/node";
import { startCluster, type TestCluster } from "../../scripts/harness/cluster";
import { postBurst } from "../../scripts/burst";
import { checkInvariants, unsettledOrders } from "../../scripts/invariants";

const ORDERS = 1000;
let cluster: TestCluster;
let api: string;

beforeAll(async () => {
	const port = await freePort();
	api = `http://127.0.0.1:${port}`;
	cluster = await startCluster(
		[
			{ name: "b-gateway", env: { SERVICES: "gateway", PORT: String(port) } },
			{ name: "b-order", env: { SERVICES: "order,validation,voucher" } },
			{ name: "b-stock", env: { SERVICES: "inventory,payment,wallet" } },
			{ name: "b-sinks", env: { SERVICES: "notification,audit" } },
		],
		{ RATE_LIMIT: "1000000" },
	);
	await eventually("the gateway to reach order.create", async () => {
		const res = await fetch(`${api}/api/orders`, { method: "POST" });
		return res.status === 401;
	}, 60000, 250);
}, 120000);

afterAll(async () => {
	await cluster?.stop();
});

it("settles every order of a 1,000-order burst, with SPEC section 9 intact", async () => {
	const products = await Promise.all(
		Array.from({ length: 20 }, (_, i) => cluster.call<{ id: string }>("inventory.create", { sku: `BURST-${i}`, name: `Burst ${i}`, category: "burst", price: 500 + i * 10, stock: 1000 })),
	);
	const users = Array.from({ length: 32 }, (_, i) => `burst-${i}`);
	await Promise.all(users.map(userId => cluster.call("wallet.credit", { userId, amount: 1_000_000, reason: "TOP_UP", idempotencyKey: `seed-${userId}` })));

	const burst = await postBurst(api, users, products.map(p => p.id), ORDERS);
	expect(burst.errors).toEqual({});
	expect(burst.orders).toHaveLength(ORDERS);

	const pg = new Client({ connectionString: cluster.databaseUrl });
	await pg.connect();
	try {
		await eventually("every order of the burst to settle", async () => (await unsettledOrders(pg)) === 0, 150000, 1000);
		const { rows } = await pg.query(`SELECT status, count(*)::int AS n FROM "order".orders GROUP BY status`);
		expect(rows).toEqual([{ status: "CONFIRMED", n: ORDERS }]);
		const invariants = await checkInvariants(pg, [], new Set(burst.orders.map(o => o.id)));
		expect(invariants.filter(i => !i.ok)).toEqual([]);
		expect(invariants.length).toBeGreaterThanOrEqual(9);
	} finally {
		await pg.end();
	}
}, 300000);
