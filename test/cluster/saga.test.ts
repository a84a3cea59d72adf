/**
 * The whole checkout across two full nodes over NATS, Kafka, Redis and PostgreSQL: 200 concurrent
 * orders for a product with stock 50 end with exactly 50 confirmed, nothing oversold, every charge
 * and debit once, and money conserved.
 */
import { randomUUID } from "node:crypto";
import { Client } from "pg";
import { startMockGateway, type MockGateway } from "../../lib/mock-gateway";
import { eventually } from "../../scripts/harness/node";
import { startCluster, type TestCluster } from "../../scripts/harness/cluster";

const ADDRESS = { name: "N", line1: "L", city: "C", postalCode: "P", country: "DE" };
const TERMINAL = ["CONFIRMED", "FAILED", "PAYMENT_FAILED", "CANCELLED"];
let cluster: TestCluster;
let gateway: MockGateway;
const call = <T = any>(action: string, params: Record<string, any> = {}) => cluster.call<T>(action, params);

beforeAll(async () => {
	gateway = await startMockGateway();
	cluster = await startCluster(
		[
			{ name: "full-1", env: { SERVICES: "order,validation,inventory,payment,wallet" } },
			{ name: "full-2", env: { SERVICES: "order,validation,inventory,payment,wallet,voucher,notification,audit" } },
		],
		{ PAYMENT_GATEWAY_URL: gateway.url, SAGA_STEP_TIMEOUT_MS: "20000", EVENT_MAX_ATTEMPTS: "8" },
	);
}, 120000);

afterAll(async () => {
	await cluster?.stop();
	await gateway?.close();
});

it("confirms exactly the stock there is out of 200 concurrent orders, charging each order once", async () => {
	const hot = await call("inventory.create", { sku: "HOT", name: "Hot product", category: "x", price: 1000, stock: 50 });
	const users = Array.from({ length: 200 }, (_, i) => `buyer-${i}`);
	await Promise.all(users.map(userId => call("wallet.credit", { userId, amount: 5000, reason: "TOP_UP", idempotencyKey: `seed-${userId}` })));

	const attempts = await Promise.all(
		users.map((userId, i) =>
			call("order.create", {
				userId,
				items: [{ productId: hot.id, quantity: 1 }],
				shippingAddress: ADDRESS,
				payment: i % 2 ? { method: "WALLET" } : { method: "CARD", cardToken: "tok_visa" },
				idempotencyKey: randomUUID(),
			}).then(
				o => ({ accepted: true as const, id: o.id as string, method: i % 2 ? "WALLET" : "CARD", userId }),
				err => ({ accepted: false as const, type: err.type as string }),
			),
		),
	);
	const refused = attempts.filter(a => !a.accepted);
	expect(refused.every(r => !r.accepted && r.type === "CART_INVALID")).toBe(true); // validation saw no stock left
	const accepted = attempts.filter(a => a.accepted) as Array<{ id: string; method: string; userId: string }>;
	expect(accepted.length).toBeGreaterThanOrEqual(50);

	const finals = await eventually(
		"every accepted order to finish",
		async () => {
			// In batches, under the bulkhead's limits (50 running + 500 queued).
			const orders: any[] = [];
			for (let i = 0; i < accepted.length; i += 50) orders.push(...(await Promise.all(accepted.slice(i, i + 50).map(a => call("order.get", { orderId: a.id })))));
			return orders.every(o => TERMINAL.includes(o.status)) && orders;
		},
		120000,
		1000,
	);
	const confirmed = finals.filter(o => o.status === "CONFIRMED");
	expect(confirmed).toHaveLength(50);
	expect(finals.filter(o => o.status !== "CONFIRMED").every(o => o.status === "FAILED" && o.failureCode === "OUT_OF_STOCK")).toBe(true);

	const level = (await call("inventory.levels", { pageSize: 100 })).rows.find((l: any) => l.productId === hot.id);
	expect(level).toMatchObject({ onHand: 0, reserved: 0, available: 0 });

	// Every confirmed card order charged once, no other order charged at all.
	const byOrder = new Map(accepted.map(a => [a.id, a]));
	const cardConfirmed = confirmed.filter(o => byOrder.get(o.id)!.method === "CARD").map(o => o.id).sort();
	const charged = gateway.charges().map(c => /order-(.+)-charge/.exec(c.idempotencyKey)?.[1]).sort();
	expect(charged).toEqual(cardConfirmed);

	// Money conserves: every balance is 5000 minus its confirmed wallet order, and ledgers agree.
	const pg = new Client({ connectionString: cluster.databaseUrl });
	await pg.connect();
	try {
		const { rows: wallets } = await pg.query("SELECT user_id, balance::int AS balance FROM wallet.wallets");
		const { rows: debits } = await pg.query("SELECT order_id, count(*)::int AS n FROM wallet.wallet_transactions WHERE reason = 'PAYMENT' GROUP BY order_id");
		expect(debits.every(d => d.n === 1)).toBe(true);
		const paidByWallet = new Set(confirmed.filter(o => byOrder.get(o.id)!.method === "WALLET").map(o => o.userId));
		expect(debits.map(d => d.order_id).sort()).toEqual(confirmed.filter(o => byOrder.get(o.id)!.method === "WALLET").map(o => o.id).sort());
		for (const w of wallets) expect(w.balance).toBe(paidByWallet.has(w.user_id) ? 4000 : 5000);
		const { rows: negative } = await pg.query("SELECT count(*)::int AS n FROM inventory.products WHERE on_hand < 0 OR reserved < 0");
		expect(negative[0].n).toBe(0);
	} finally {
		await pg.end();
	}
});
