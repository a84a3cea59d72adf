/**
 * 100 concurrent wallet payments against one wallet, balanced over two wallet nodes on real
 * PostgreSQL: the balance never goes below 0 and the ledger sums to it.
 */
import { randomUUID } from "node:crypto";
import { startCluster, type TestCluster } from "../../scripts/harness/cluster";

let cluster: TestCluster;
const call = <T = any>(action: string, params: Record<string, any> = {}) => cluster.call<T>(action, params);

beforeAll(async () => {
	cluster = await startCluster([
		{ name: "wallet-1", env: { SERVICES: "wallet" } },
		{ name: "wallet-2", env: { SERVICES: "wallet" } },
	]);
});
afterAll(() => cluster?.stop());

it("lets exactly as many payments through as the balance covers, on two nodes at once", async () => {
	const userId = "shared-wallet";
	await call("wallet.credit", { userId, amount: 5000, reason: "TOP_UP", idempotencyKey: randomUUID() });
	const orders = Array.from({ length: 100 }, () => randomUUID());
	// Every order is also paid twice concurrently: at most one debit per order must result.
	const attempts = [...orders, ...orders.slice(0, 20)].map(orderId =>
		call("wallet.debit", { userId, amount: 100, orderId }).then(
			r => ({ ok: true as const, orderId, txId: r.transaction.id as string }),
			err => ({ ok: false as const, orderId, type: err.type as string }),
		),
	);
	const results = await Promise.all(attempts);
	const refused = results.filter(r => !r.ok);
	expect(refused.every(r => !r.ok && r.type === "INSUFFICIENT_FUNDS")).toBe(true);

	const ledger = await call("wallet.transactions", { userId, pageSize: 100, page: 1 });
	const rest = await call("wallet.transactions", { userId, pageSize: 100, page: 2 });
	const rows = [...ledger.rows, ...rest.rows];
	const debits = rows.filter((r: any) => r.type === "DEBIT");
	expect(debits).toHaveLength(50);
	expect(new Set(debits.map((r: any) => r.orderId)).size).toBe(50);
	expect(rows.every((r: any) => r.balanceAfter >= 0)).toBe(true);
	const { balance } = await call("wallet.get", { userId });
	expect(balance).toBe(0);
	expect(rows.reduce((s: number, r: any) => s + (r.type === "CREDIT" ? r.amount : -r.amount), 0)).toBe(balance);
});
