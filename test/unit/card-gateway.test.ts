import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { verifySignature } from "../../lib/webhook-signature";
import { eventually } from "../../scripts/harness/node";
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

	it("stops calling a failing gateway while its circuit is open: after that many requests failed in a row, each after its retries", async () => {
		const g = gateway(new CircuitBreaker(2, 60000));
		await charge("tok_timeout", randomUUID(), g); // four tries, one failed request
		expect(g.breaker.state).toBe("closed");
		await charge("tok_timeout", randomUUID(), g);
		expect(g.breaker.state).toBe("open");
		const key = randomUUID();
		expect(await charge("tok_visa", key, g)).toEqual({ ok: false, code: "PROVIDER_UNAVAILABLE", reason: expect.stringMatching(/circuit open/), ambiguous: false });
		expect(triesOf(key)).toBe(0);
	});

	it("keeps its circuit closed for flaky cards whose retries end in a charge, so other customers' cards still go through", async () => {
		const g = gateway(new CircuitBreaker(2, 60000));
		// Three flaky cards at once: six 503s, every request charged in the end.
		const flaky = await Promise.all([1, 2, 3].map(() => charge("tok_flaky", randomUUID(), g)));
		expect(flaky).toEqual([1, 2, 3].map(() => ({ ok: true, chargeId: expect.any(String) })));
		expect(g.breaker.state).toBe("closed");
		expect(await charge("tok_visa", randomUUID(), g)).toEqual({ ok: true, chargeId: expect.any(String) });
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

describe("the mock gateway's hosted sessions", () => {
	const SECRET = "whsec_unit_test_secret_0000";
	it("expires an unpaid session at its time and sends the signed checkout.session.expired webhook, retrying until answered 2xx", async () => {
		const received: Array<{ signature: string; body: string }> = [];
		let refuseFirst = true;
		const receiver = http.createServer((req, res) => {
			let body = "";
			req.on("data", d => (body += d));
			req.on("end", () => {
				received.push({ signature: String(req.headers["gateway-signature"]), body });
				res.writeHead(refuseFirst ? 503 : 200).end();
				refuseFirst = false;
			});
		});
		await new Promise<void>(r => receiver.listen(0, "127.0.0.1", r));
		const hosted = await startMockGateway({ webhookUrl: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`, webhookSecret: SECRET, webhookRetryBaseMs: 20 });
		try {
			const client = new CardGateway(hosted.url, { timeoutMs: 1000, retries: 0 });
			const created = await client.createSession({ orderId: randomUUID(), amount: 500, currency: "eur", successUrl: "https://shop.example.com/ok/{SESSION_ID}", cancelUrl: "https://shop.example.com/back", expiresAt: new Date(Date.now() + 1500), idempotencyKey: randomUUID() });
			if (!created.ok) throw new Error(created.reason);
			expect(created.session).toMatchObject({ status: "open", paymentStatus: "unpaid", amount: 500, currency: "EUR", url: `${hosted.url}/checkout/${created.session.id}` });
			await eventually("the expired webhook delivered", async () => hosted.webhooks().some(w => w.status === "delivered"), 8000, 50);
			const asked = await client.getSession(created.session.id);
			expect(asked).toMatchObject({ ok: true, session: { status: "expired" } });
			expect(received.length).toBe(2); // refused once, then delivered
			for (const r of received) {
				expect(verifySignature(r.signature, r.body, SECRET)).toMatchObject({ ok: true });
				expect(JSON.parse(r.body)).toMatchObject({ type: "checkout.session.expired", data: { object: { id: created.session.id, status: "expired" } } });
			}
			const page = await fetch(created.session.url);
			expect(await page.text()).toContain("This payment session is expired");
		} finally {
			await hosted.close();
			receiver.close();
		}
	});

	it("answers the same session for the same key, and refuses a session with a bad URL or a past expiry", async () => {
		const client = gateway();
		const req = { orderId: randomUUID(), amount: 700, currency: "EUR", successUrl: "https://shop.example.com/ok", cancelUrl: "https://shop.example.com/back", expiresAt: new Date(Date.now() + 60000), idempotencyKey: randomUUID() };
		const first = await client.createSession(req);
		expect(await client.createSession(req)).toEqual(first);
		expect(await client.createSession({ ...req, idempotencyKey: randomUUID(), successUrl: "ftp://x" })).toMatchObject({ ok: false, unavailable: false });
		expect(await client.createSession({ ...req, idempotencyKey: randomUUID(), expiresAt: new Date(Date.now() - 1000) })).toMatchObject({ ok: false, unavailable: false });
		expect(await client.getSession("cs_nope")).toMatchObject({ ok: false, unavailable: false });
	});
});
