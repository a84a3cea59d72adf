import { randomUUID } from "node:crypto";
import { eventually, startTestNode, tempDir, type TestNode } from "../../scripts/harness/node";
import { watchStatements } from "../../scripts/harness/statements";
import { runtimeOf } from "../../lib/runtime";

const data = tempDir();
let node: TestNode;
const call = <T = any>(action: string, params: Record<string, any> = {}) => node.broker.call<T, Record<string, any>>(action, params);
const topUp = (userId: string, amount: number) => call("wallet.credit", { userId, amount, reason: "TOP_UP", idempotencyKey: randomUUID() });
const balance = async (userId: string) => (await call<{ balance: number }>("wallet.get", { userId })).balance;

beforeAll(async () => {
	node = await startTestNode({ DATA_DIR: data.dir, SERVICES: "wallet,audit" });
});
afterAll(async () => {
	await node?.stop();
	data.remove();
});

describe("wallet", () => {
	it("creates a wallet at 0 in the store currency on first use", async () => {
		expect(await call("wallet.get", { userId: "new-user" })).toEqual({ userId: "new-user", balance: 0, currency: "EUR" });
	});

	it("credits a top-up once per idempotency key and writes the ledger row", async () => {
		const key = randomUUID();
		const first = await call("wallet.credit", { userId: "u1", amount: 1500, reason: "TOP_UP", idempotencyKey: key });
		const again = await call("wallet.credit", { userId: "u1", amount: 1500, reason: "TOP_UP", idempotencyKey: key });
		expect(again).toEqual(first);
		expect(first).toMatchObject({ balance: 1500, transaction: { type: "CREDIT", reason: "TOP_UP", amount: 1500, balanceAfter: 1500 } });
		expect(await balance("u1")).toBe(1500);
	});

	it("debits a balance down to exactly zero", async () => {
		await topUp("u2", 1000);
		const orderId = randomUUID();
		const r = await call("wallet.debit", { userId: "u2", amount: 1000, orderId });
		expect(r).toMatchObject({ balance: 0, transaction: { type: "DEBIT", reason: "PAYMENT", amount: 1000, balanceAfter: 0, orderId } });
	});

	it("refuses a debit one cent over the balance and changes nothing", async () => {
		await topUp("u3", 999);
		const orderId = randomUUID();
		await expect(call("wallet.debit", { userId: "u3", amount: 1000, orderId })).rejects.toMatchObject({ code: 422, type: "INSUFFICIENT_FUNDS" });
		expect(await balance("u3")).toBe(999);
		const ledger = await call("wallet.transactions", { userId: "u3" });
		expect(ledger.rows.map((r: any) => r.reason)).toEqual(["TOP_UP"]);
	});

	it("takes at most one payment per order, even when asked concurrently", async () => {
		await topUp("u4", 5000);
		const orderId = randomUUID();
		const results = await Promise.all(Array.from({ length: 5 }, () => call("wallet.debit", { userId: "u4", amount: 1200, orderId })));
		expect(new Set(results.map(r => r.transaction.id)).size).toBe(1);
		expect(await balance("u4")).toBe(3800);
	});

	it("debits many orders at once (one group) in arrival order: as many as the balance covers, the others refused alone", async () => {
		await topUp("u4b", 1000);
		const results = await Promise.allSettled(Array.from({ length: 8 }, () => call("wallet.debit", { userId: "u4b", amount: 300, orderId: randomUUID() })));
		const taken = results.filter(r => r.status === "fulfilled").map(r => (r as PromiseFulfilledResult<any>).value);
		expect(taken).toHaveLength(3);
		expect(taken.map(t => t.balance).sort((a, b) => b - a)).toEqual([700, 400, 100]);
		for (const r of results.filter(r => r.status === "rejected")) expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 422, type: "INSUFFICIENT_FUNDS" });
		expect(await balance("u4b")).toBe(100);
	});

	it("debits from the wallet row it wrote last and a new order's none, unread, and reads what it cannot know", async () => {
		await topUp("u-known", 5000);
		const retries = () => (node.broker.metrics.getMetric("checkout_read_ahead_retries_total")?.get({ service: "wallet" })?.value as number | undefined) ?? 0;
		const debit = (orderId: string) => call("wallet.debit", { userId: "u-known", amount: 100, orderId });
		let reads: string[] = [];
		const stop = watchStatements(sql => {
			const read = /^SELECT ctid::text .* AS row_version_, .* FROM "wallet"\."(\w+)"/.exec(sql);
			if (read) reads.push(read[1]);
		});
		const readBy = async (step: () => Promise<unknown>) => {
			reads = [];
			const result = await step();
			return { reads, result };
		};
		try {
			const before = retries();
			const first = randomUUID();
			// A new order has no debit to read; the wallet was last written by the top-up.
			const paid = await readBy(() => debit(first));
			expect(paid.reads).toEqual(["wallets"]);
			// The wallet as this node's last debit left it: nothing read ahead.
			expect((await readBy(() => debit(randomUUID()))).reads).toEqual([]);
			// A credit in between is not remembered: the wallet is read.
			await topUp("u-known", 1000);
			expect((await readBy(() => debit(randomUUID()))).reads).toEqual(["wallets"]);
			// An order tried before is read, and answers its first debit.
			const again = await readBy(() => debit(first));
			expect(again).toEqual({ reads: ["wallet_transactions"], result: paid.result });
			// That debit wrote nothing, so the wallet it took is not remembered again.
			expect((await readBy(() => debit(randomUUID()))).reads).toEqual(["wallets"]);
			expect(retries()).toBe(before);
			// Changed behind its back (another node, an operator): the guard fails once, and the debit reads.
			const { sequelize } = await runtimeOf(node.broker).database();
			await sequelize.query(`UPDATE wallet.wallets SET updated_at = now() WHERE user_id = 'u-known'`);
			expect((await readBy(() => debit(randomUUID()))).reads).toEqual(["wallet_transactions", "wallets"]);
			expect(retries()).toBe(before + 1);
		} finally {
			stop();
		}
		expect(await balance("u-known")).toBe(5000 - 100 + 1000 - 100 - 100 - 100 - 100);
	});

	it("refunds an order's payment once, never more than was paid, never without a payment", async () => {
		await topUp("u5", 3000);
		const orderId = randomUUID();
		await call("wallet.debit", { userId: "u5", amount: 2000, orderId });
		await expect(call("wallet.credit", { userId: "u5", amount: 2001, reason: "REFUND", orderId })).rejects.toMatchObject({ type: "REFUND_EXCEEDS_PAYMENT" });
		const first = await call("wallet.credit", { userId: "u5", amount: 2000, reason: "REFUND", orderId });
		const again = await call("wallet.credit", { userId: "u5", amount: 2000, reason: "REFUND", orderId });
		expect(again).toEqual(first);
		expect(await balance("u5")).toBe(3000);
		await expect(call("wallet.credit", { userId: "u5", amount: 10, reason: "REFUND", orderId: randomUUID() })).rejects.toMatchObject({ type: "NOTHING_TO_REFUND" });
		await expect(call("wallet.credit", { userId: "u5", amount: 10, reason: "REFUND" })).rejects.toMatchObject({ type: "REFUND_WITHOUT_ORDER" });
	});

	it("adjusts up and down but never below zero", async () => {
		expect(await call("wallet.adjust", { userId: "u6", amount: 700, reason: "goodwill" })).toMatchObject({ balance: 700 });
		expect(await call("wallet.adjust", { userId: "u6", amount: -200, reason: "correction" })).toMatchObject({ balance: 500 });
		await expect(call("wallet.adjust", { userId: "u6", amount: -501, reason: "too much" })).rejects.toMatchObject({ type: "INSUFFICIENT_FUNDS" });
		const ledger = await call("wallet.transactions", { userId: "u6" });
		expect(ledger.rows.map((r: any) => [r.type, r.reason, r.amount, r.balanceAfter, r.note])).toEqual([
			["DEBIT", "ADJUSTMENT", 200, 500, "correction"],
			["CREDIT", "ADJUSTMENT", 700, 700, "goodwill"],
		]);
	});

	it("pages the ledger newest first", async () => {
		for (let i = 1; i <= 5; i++) await topUp("u7", i);
		const page = await call("wallet.transactions", { userId: "u7", page: 2, pageSize: 2 });
		expect(page).toMatchObject({ total: 5, page: 2, pageSize: 2, totalPages: 3 });
		expect(page.rows.map((r: any) => r.amount)).toEqual([3, 2]);
		await expect(call("wallet.transactions", { userId: "u7", pageSize: 101 })).rejects.toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
	});

	it.each([
		["a zero amount", { amount: 0 }],
		["a negative amount", { amount: -5 }],
		["a fraction of a cent", { amount: 10.5 }],
		["an amount as text", { amount: "10" }],
		["no order id", { orderId: undefined }],
		["an order id that is not a uuid", { orderId: "o-1" }],
	])("refuses a debit with %s", async (_what, change) => {
		await expect(call("wallet.debit", { userId: "u8", amount: 10, orderId: randomUUID(), ...change })).rejects.toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
	});

	it("publishes wallet.debited with the order as correlation (audit sees it)", async () => {
		await topUp("u9", 100);
		const orderId = randomUUID();
		await call("wallet.debit", { userId: "u9", amount: 60, orderId });
		const timeline = await eventually("wallet.debited in the audit", async () => {
			const rows = await call<any[]>("audit.timeline", { orderId });
			return rows.length > 0 && rows;
		});
		expect(timeline).toEqual([expect.objectContaining({ eventName: "wallet.debited", data: { userId: "u9", amount: 60, balanceAfter: 40, orderId, reason: "PAYMENT" } })]);
	});

	it("keeps money conserved: the balance is the sum of the ledger", async () => {
		const ledger = await call("wallet.transactions", { userId: "u5", pageSize: 100 });
		const sum = ledger.rows.reduce((s: number, r: any) => s + (r.type === "CREDIT" ? r.amount : -r.amount), 0);
		expect(sum).toBe(await balance("u5"));
	});
});
