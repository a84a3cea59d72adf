import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import type { MockGateway } from "../../lib/mock-gateway";
import { runtimeOf } from "../../lib/runtime";
import { eventually, startTestNode, tempDir, type TestNode } from "../../scripts/harness/node";

let node: TestNode;
let mock: MockGateway;
const data = tempDir();
const call = <T = any>(action: string, params: Record<string, any> = {}) => node.broker.call<T, Record<string, any>>(action, params);
const fund = (userId: string, amount: number) => call("wallet.credit", { userId, amount, reason: "TOP_UP", idempotencyKey: randomUUID() });
const balance = async (userId: string) => (await call("wallet.get", { userId })).balance;
const authorize = (params: Record<string, any>) => call("payment.authorize", { currency: "EUR", ...params });
const eventsOf = async (orderId: string) => (await call<any[]>("audit.timeline", { orderId })).map(e => e.eventName);
const chargesFor = (orderId: string) => mock.charges().filter(c => c.idempotencyKey === `/charges:order-${orderId}-charge`);

beforeAll(async () => {
	node = await startTestNode({
		DATA_DIR: data.dir,
		SERVICES: "payment,wallet,audit",
		PAYMENT_TIMEOUT_MS: "200",
		PAYMENT_RETRIES: "3",
		REFUND_MAX_ATTEMPTS: "3",
		REFUND_RETRY_BASE_MS: "50",
		// The three failed refund requests of tok_refundFail (below) open it.
		PAYMENT_BREAKER_THRESHOLD: "3",
		PAYMENT_BREAKER_OPEN_MS: "3000",
	});
	mock = (node.broker.getLocalService("payment") as any).mock;
});
afterAll(async () => {
	await node?.stop();
	data.remove();
});

describe("wallet payments", () => {
	it("authorizes a total equal to the balance, once however often it is asked", async () => {
		await fund("w1", 2500);
		const orderId = randomUUID();
		const first = await authorize({ orderId, userId: "w1", amount: 2500, method: "WALLET" });
		expect(first).toEqual({ ok: true, paymentId: expect.any(String), method: "WALLET", amount: 2500, status: "AUTHORIZED" });
		expect(await authorize({ orderId, userId: "w1", amount: 2500, method: "WALLET" })).toEqual(first);
		expect(await balance("w1")).toBe(0);
		await eventually("payment.authorized", async () => (await eventsOf(orderId)).includes("payment.authorized"));
	});

	it("opens one payment per order when many are asked at once (in groups), the same order twice included", async () => {
		await fund("w-many", 10 * 300);
		const orderIds = Array.from({ length: 10 }, () => randomUUID());
		const asked = [...orderIds, orderIds[0], orderIds[1]].map(orderId => authorize({ orderId, userId: "w-many", amount: 300, method: "WALLET" }));
		const results = await Promise.all(asked);
		expect(results.every(r => r.ok && r.status === "AUTHORIZED")).toBe(true);
		expect(results[10].paymentId).toBe(results[0].paymentId);
		expect(results[11].paymentId).toBe(results[1].paymentId);
		expect(new Set(results.map(r => r.paymentId)).size).toBe(10);
		expect(await balance("w-many")).toBe(0);
		const { sequelize } = await runtimeOf(node.broker).database();
		const [{ n }] = await sequelize.query<{ n: string }>(`SELECT count(*) AS n FROM payment.payments WHERE order_id = ANY(ARRAY[:orderIds]::uuid[])`, { replacements: { orderIds }, type: QueryTypes.SELECT });
		expect(Number(n)).toBe(10);
	});

	it("fails one cent short with INSUFFICIENT_FUNDS and leaves the balance alone", async () => {
		await fund("w2", 2499);
		const orderId = randomUUID();
		expect(await authorize({ orderId, userId: "w2", amount: 2500, method: "WALLET" })).toEqual({
			ok: false,
			paymentId: expect.any(String),
			code: "INSUFFICIENT_FUNDS",
			reason: expect.any(String),
		});
		expect(await balance("w2")).toBe(2499);
		const failed = await eventually("payment.failed", async () => (await call<any[]>("audit.timeline", { orderId })).find(e => e.eventName === "payment.failed"));
		expect(failed.data).toMatchObject({ orderId, code: "INSUFFICIENT_FUNDS" });
	});

	it("refunds a wallet payment once, with payment.refunded", async () => {
		await fund("w3", 1000);
		const orderId = randomUUID();
		await authorize({ orderId, userId: "w3", amount: 800, method: "WALLET" });
		expect(await call("payment.refund", { orderId, reason: "CANCELLED" })).toMatchObject({ status: "REFUND_PENDING" });
		await eventually("REFUNDED", async () => (await call("payment.get", { orderId })).status === "REFUNDED");
		expect(await call("payment.refund", { orderId, reason: "CANCELLED" })).toMatchObject({ status: "REFUNDED" });
		expect(await balance("w3")).toBe(1000);
		await eventually("payment.refunded", async () => (await eventsOf(orderId)).includes("payment.refunded"));
	});

	it("authorizes a zero total (vouchers paid it all) without touching the wallet", async () => {
		const orderId = randomUUID();
		expect(await authorize({ orderId, userId: "w4", amount: 0, method: "WALLET" })).toMatchObject({ ok: true, status: "AUTHORIZED" });
		expect((await call("wallet.transactions", { userId: "w4" })).total).toBe(0);
	});
});

describe("card payments", () => {
	it("authorizes tok_visa with one charge keyed by the order", async () => {
		const orderId = randomUUID();
		expect(await authorize({ orderId, userId: "c1", amount: 4200, method: "CARD", cardToken: "tok_visa" })).toMatchObject({ ok: true, method: "CARD" });
		await authorize({ orderId, userId: "c1", amount: 4200, method: "CARD", cardToken: "tok_visa" });
		expect(chargesFor(orderId)).toEqual([expect.objectContaining({ amount: 4200, currency: "EUR" })]);
	});

	it.each([
		["tok_chargeDeclined", "PAYMENT_DECLINED"],
		["tok_insufficientFunds", "INSUFFICIENT_FUNDS"],
	])("fails %s as %s, final, without retries", async (cardToken, code) => {
		const orderId = randomUUID();
		expect(await authorize({ orderId, userId: "c2", amount: 100, method: "CARD", cardToken })).toMatchObject({ ok: false, code });
		expect(mock.requests().filter(r => r.key === `order-${orderId}-charge`)).toHaveLength(1);
		expect(await authorize({ orderId, userId: "c2", amount: 100, method: "CARD", cardToken: "tok_visa" })).toMatchObject({ ok: false, code });
	});

	it("charges tok_flaky exactly once after its retries", async () => {
		const orderId = randomUUID();
		expect(await authorize({ orderId, userId: "c3", amount: 999, method: "CARD", cardToken: "tok_flaky" })).toMatchObject({ ok: true });
		expect(chargesFor(orderId)).toHaveLength(1);
		expect(mock.requests().filter(r => r.key === `order-${orderId}-charge`)).toHaveLength(3);
	});

	it("refunds a card payment through the gateway", async () => {
		const orderId = randomUUID();
		await authorize({ orderId, userId: "c5", amount: 700, method: "CARD", cardToken: "tok_visa" });
		await call("payment.refund", { orderId, reason: "EXPIRED" });
		await eventually("REFUNDED", async () => (await call("payment.get", { orderId })).status === "REFUNDED");
		expect(chargesFor(orderId)[0]).toMatchObject({ refunded: 700 });
	});

	it("records REFUND_FAILED after the last try and says so with payment.refund_failed", async () => {
		const orderId = randomUUID();
		await authorize({ orderId, userId: "c6", amount: 300, method: "CARD", cardToken: "tok_refundFail" });
		await call("payment.refund", { orderId, reason: "EXPIRED" });
		await eventually("REFUND_FAILED", async () => (await call("payment.get", { orderId })).status === "REFUND_FAILED", 15000);
		expect((await call("payment.get", { orderId })).refundAttempts).toBe(3);
		await eventually("payment.refund_failed", async () => (await eventsOf(orderId)).includes("payment.refund_failed"));
	});

	it("stops calling the gateway while its circuit is open (the failed refunds above opened it), then tries again", async () => {
		const gateway = (node.broker.getLocalService("payment") as any).gateway;
		expect(gateway.breaker.state).toBe("open");
		const key = randomUUID();
		await expect(call("payment.topUp", { userId: "cb", amount: 100, cardToken: "tok_visa", idempotencyKey: key })).rejects.toMatchObject({ code: 503, type: "PROVIDER_UNAVAILABLE" });
		expect(mock.requests().filter(r => r.key.includes("topup-")).length).toBe(0);
		await eventually("the circuit to half-open", async () => gateway.breaker.state === "half-open", 6000);
		expect(await call("payment.topUp", { userId: "cb", amount: 100, cardToken: "tok_visa", idempotencyKey: key })).toMatchObject({ balance: 100 });
		expect(gateway.breaker.state).toBe("closed");
	});

	it("needs a card token for a card payment", async () => {
		await expect(authorize({ orderId: randomUUID(), userId: "c7", amount: 1, method: "CARD" })).rejects.toMatchObject({ code: 422, type: "CARD_TOKEN_REQUIRED" });
	});
});

describe("card payments whose outcome is uncertain", () => {
	// A node of their own: their hanging tries open the gateway's circuit, which the tests above watch.
	let uncertain: TestNode;
	let uncertainMock: MockGateway;
	const uncertainData = tempDir();
	beforeAll(async () => {
		uncertain = await startTestNode({ DATA_DIR: uncertainData.dir, SERVICES: "payment,wallet,audit", PAYMENT_TIMEOUT_MS: "200", PAYMENT_RETRIES: "3", REFUND_MAX_ATTEMPTS: "3", REFUND_RETRY_BASE_MS: "50", PAYMENT_BREAKER_OPEN_MS: "1000" });
		uncertainMock = (uncertain.broker.getLocalService("payment") as any).mock;
	});
	afterAll(async () => {
		await uncertain?.stop();
		uncertainData.remove();
	});
	const ucall = <T = any>(action: string, params: Record<string, any> = {}) => uncertain.broker.call<T, Record<string, any>>(action, params);
	const ucharges = (orderId: string) => uncertainMock.charges().filter(c => c.idempotencyKey === `/charges:order-${orderId}-charge`);

	it("refunds a charge the gateway took after every try had timed out", async () => {
		const orderId = randomUUID();
		// Every answer for this key is held 2.5 s: all tries time out, yet the gateway charged.
		expect(await ucall("payment.authorize", { orderId, userId: "c8", amount: 640, currency: "EUR", method: "CARD", cardToken: "tok_slow" })).toMatchObject({ ok: false, code: "PROVIDER_UNAVAILABLE" });
		expect(ucharges(orderId)).toHaveLength(1);
		await eventually("the uncertain charge refunded", async () => ucharges(orderId)[0].refunded === 640, 20000);
		expect(ucharges(orderId)).toHaveLength(1); // asked again with the same key: no second charge
		expect((await ucall("payment.get", { orderId })).status).toBe("FAILED");
		await eventually("payment.refunded", async () => (await ucall<any[]>("audit.timeline", { orderId })).some(e => e.eventName === "payment.refunded"));
	});

	it("ends tok_timeout as PROVIDER_UNAVAILABLE with nothing charged", async () => {
		const orderId = randomUUID();
		expect(await ucall("payment.authorize", { orderId, userId: "c4", amount: 999, currency: "EUR", method: "CARD", cardToken: "tok_timeout" })).toMatchObject({ ok: false, code: "PROVIDER_UNAVAILABLE" });
		expect(ucharges(orderId)).toEqual([]);
	});
});

describe("payments whose attempt died with its node", () => {
	// A node of its own whose sweep abandons a payment PENDING for more than a second.
	let n: TestNode;
	const nData = tempDir();
	beforeAll(async () => {
		n = await startTestNode({ DATA_DIR: nData.dir, SERVICES: "payment,wallet,audit", PAYMENT_ABANDON_MS: "1000", REFUND_RETRY_BASE_MS: "50" });
	});
	afterAll(async () => {
		await n?.stop();
		nData.remove();
	});
	const ncall = <T = any>(action: string, params: Record<string, any> = {}) => n.broker.call<T, Record<string, any>>(action, params);
	const nbalance = async (userId: string) => (await ncall("wallet.get", { userId })).balance;
	const nevents = async (orderId: string) => (await ncall<any[]>("audit.timeline", { orderId })).map(e => e.eventName);
	/** A payment row as a node killed between its wallet debit and its settle leaves it. */
	const leftPending = async (orderId: string, userId: string, amount: number) => {
		const { sequelize } = await runtimeOf(n.broker).database();
		await sequelize.query(
			`INSERT INTO payment.payments (id, order_id, user_id, method, amount, currency, status, created_at) VALUES (:id, :orderId, :userId, 'WALLET', :amount, 'EUR', 'PENDING', now() - interval '1 minute')`,
			{ replacements: { id: randomUUID(), orderId, userId, amount } },
		);
	};

	it("fails a payment left PENDING and gives back the debit its dead attempt had taken", async () => {
		await ncall("wallet.credit", { userId: "d1", amount: 900, reason: "TOP_UP", idempotencyKey: randomUUID() });
		const orderId = randomUUID();
		await ncall("wallet.debit", { userId: "d1", amount: 900, orderId });
		await leftPending(orderId, "d1", 900);
		await eventually("the debit given back", async () => (await nbalance("d1")) === 900);
		expect(await ncall("payment.get", { orderId })).toMatchObject({ status: "FAILED", failureCode: "PROVIDER_UNAVAILABLE" });
		await eventually("payment.failed then payment.refunded", async () => {
			const names = await nevents(orderId);
			return names.includes("payment.failed") && names.includes("payment.refunded");
		});
	});

	it("fails one that took nothing without moving money", async () => {
		await ncall("wallet.credit", { userId: "d2", amount: 500, reason: "TOP_UP", idempotencyKey: randomUUID() });
		const orderId = randomUUID();
		await leftPending(orderId, "d2", 500);
		await eventually("FAILED", async () => (await ncall("payment.get", { orderId })).status === "FAILED");
		const { sequelize } = await runtimeOf(n.broker).database();
		await eventually("reconciled", async () => {
			const [row] = await sequelize.query<{ reconcile: boolean }>(`SELECT reconcile FROM payment.payments WHERE order_id = :orderId`, { replacements: { orderId }, type: QueryTypes.SELECT });
			return row.reconcile === false;
		});
		expect(await nbalance("d2")).toBe(500);
		expect((await ncall("wallet.transactions", { userId: "d2" })).rows.map((t: any) => t.reason)).toEqual(["TOP_UP"]);
		expect(await nevents(orderId)).not.toContain("payment.refunded");
	});

	it("gives back money an attempt takes after its payment was abandoned", async () => {
		await ncall("wallet.credit", { userId: "d3", amount: 700, reason: "TOP_UP", idempotencyKey: randomUUID() });
		const orderId = randomUUID();
		await leftPending(orderId, "d3", 700);
		await eventually("abandoned", async () => (await ncall("payment.get", { orderId })).status === "FAILED");
		// The attempt was only slow: its debit lands now, and it settles as a live attempt would.
		await ncall("wallet.debit", { userId: "d3", amount: 700, orderId });
		const { sequelize } = await runtimeOf(n.broker).database();
		const [row] = await sequelize.query<any>(`SELECT * FROM payment.payments WHERE order_id = :orderId`, { replacements: { orderId }, type: QueryTypes.SELECT });
		const settled = await (n.broker.getLocalService("payment") as any).settle({ ...row, status: "PENDING" }, { ok: true });
		expect(settled.status).toBe("FAILED");
		await eventually("the late debit given back", async () => (await nbalance("d3")) === 700);
	});

});

describe("wallet top-ups", () => {
	it("charges the card and credits the wallet once per idempotency key", async () => {
		const key = randomUUID();
		expect(await call("payment.topUp", { userId: "t1", amount: 5000, cardToken: "tok_visa", idempotencyKey: key })).toMatchObject({ balance: 5000 });
		expect(await call("payment.topUp", { userId: "t1", amount: 5000, cardToken: "tok_visa", idempotencyKey: key })).toMatchObject({ balance: 5000 });
		expect(mock.charges().filter(c => c.idempotencyKey.startsWith("/charges:topup-") && c.amount === 5000)).toHaveLength(1);
		await expect(call("payment.topUp", { userId: "t1", amount: 6000, cardToken: "tok_visa", idempotencyKey: key })).rejects.toMatchObject({ code: 409, type: "IDEMPOTENCY_KEY_REUSED" });
	});

	it("refuses a declined card with 422 and credits nothing, again when repeated", async () => {
		const key = randomUUID();
		for (let i = 0; i < 2; i++) {
			await expect(call("payment.topUp", { userId: "t2", amount: 100, cardToken: "tok_chargeDeclined", idempotencyKey: key })).rejects.toMatchObject({ code: 422, type: "PAYMENT_DECLINED" });
		}
		expect(await balance("t2")).toBe(0);
	});
});
