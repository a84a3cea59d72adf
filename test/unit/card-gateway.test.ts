import { randomUUID } from "node:crypto";
import { CardGateway } from "../../lib/card-gateway";
import { CircuitBreaker } from "../../lib/circuit-breaker";
import { startMockGateway, type MockGateway } from "../../lib/mock-gateway";

let mock: MockGateway;
beforeAll(async () => {
	mock = await startMockGateway();
});
afterAll(() => mock.close());

const gateway = (breaker?: CircuitBreaker) => new CardGateway(mock.url, { timeoutMs: 200, retries: 3, retryBaseMs: 10, breaker });
const charge = (token: string, key = randomUUID(), g = gateway()) => g.charge({ amount: 1234, currency: "EUR", token, idempotencyKey: key });
const triesOf = (key: string) => mock.requests().filter(r => r.key === key).length;

describe("mock gateway and its client", () => {
	it("authorizes tok_visa once per idempotency key", async () => {
		const key = randomUUID();
		const first = await charge("tok_visa", key);
		const again = await charge("tok_visa", key);
		expect(first).toEqual({ ok: true, chargeId: expect.stringMatching(/^ch_/) });
		expect(again).toEqual(first);
		expect(mock.charges().filter(c => c.idempotencyKey === `/charges:${key}`)).toHaveLength(1);
	});

	it.each([
		["tok_chargeDeclined", "PAYMENT_DECLINED", "card_declined"],
		["tok_insufficientFunds", "INSUFFICIENT_FUNDS", "insufficient_funds"],
		["tok_unknown", "PAYMENT_DECLINED", "invalid_token"],
	])("declines %s as %s without retrying", async (token, code, reason) => {
		const key = randomUUID();
		expect(await charge(token, key)).toEqual({ ok: false, code, reason });
		expect(triesOf(key)).toBe(1);
	});

	it("retries tok_flaky through its two 503s and charges it exactly once", async () => {
		const key = randomUUID();
		expect(await charge("tok_flaky", key)).toEqual({ ok: true, chargeId: expect.any(String) });
		expect(triesOf(key)).toBe(3);
		expect(mock.charges().filter(c => c.idempotencyKey === `/charges:${key}`)).toHaveLength(1);
	});

	it("gives up on tok_timeout after its retries with PROVIDER_UNAVAILABLE", async () => {
		const key = randomUUID();
		expect(await charge("tok_timeout", key)).toEqual({ ok: false, code: "PROVIDER_UNAVAILABLE", reason: "no answer in 200 ms", ambiguous: true });
		expect(triesOf(key)).toBe(4);
		expect(mock.charges().some(c => c.idempotencyKey === `/charges:${key}`)).toBe(false);
	});

	it("stops calling a failing gateway while its circuit is open", async () => {
		const g = gateway(new CircuitBreaker(3, 60000));
		await charge("tok_timeout", randomUUID(), g); // 4 failures: the breaker opens
		const key = randomUUID();
		expect(await charge("tok_visa", key, g)).toEqual({ ok: false, code: "PROVIDER_UNAVAILABLE", reason: expect.stringMatching(/circuit open/), ambiguous: false });
		expect(triesOf(key)).toBe(0);
	});

	it("refunds a charge once per key, never more than was charged", async () => {
		const c = await charge("tok_visa");
		if (!c.ok) throw new Error("charge failed");
		const g = gateway();
		const key = randomUUID();
		const r = await g.refund({ chargeId: c.chargeId, amount: 1234, idempotencyKey: key });
		expect(r).toEqual({ ok: true, refundId: expect.stringMatching(/^re_/) });
		expect(await g.refund({ chargeId: c.chargeId, amount: 1234, idempotencyKey: key })).toEqual(r);
		expect(await g.refund({ chargeId: c.chargeId, amount: 1, idempotencyKey: randomUUID() })).toEqual({ ok: false, reason: "invalid_amount" });
		expect(mock.charges().find(ch => ch.id === c.chargeId)!.refunded).toBe(1234);
	});

	it("refuses a request without an idempotency key or with a reused key and another body", async () => {
		const res = await fetch(`${mock.url}/charges`, { method: "POST", body: JSON.stringify({ amount: 1, currency: "EUR", token: "tok_visa" }) });
		expect(res.status).toBe(400);
		const key = randomUUID();
		await charge("tok_visa", key);
		const other = await fetch(`${mock.url}/charges`, { method: "POST", headers: { "Idempotency-Key": key }, body: JSON.stringify({ amount: 2, currency: "EUR", token: "tok_visa" }) });
		expect(other.status).toBe(400);
		expect(((await other.json()) as any).error.code).toBe("idempotency_key_reused");
	});
});
