/** Webhook signatures (Stripe's t=,v1= scheme) and the gateway's reading of a webhook request. */
import fc from "fast-check";
import { signPayload, verifySignature } from "../../lib/webhook-signature";
import { readWebhook } from "../../lib/api/webhook";

const SECRET = "whsec_test_secret_0123456789";
const NOW = 1_800_000_000;

describe("webhook signatures", () => {
	it("verifies what it signed, for any body, within the tolerance", () => {
		fc.assert(
			fc.property(fc.string(), fc.integer({ min: -300, max: 300 }), (body, skew) => {
				expect(verifySignature(signPayload(SECRET, body, NOW + skew), body, SECRET, NOW)).toEqual({ ok: true, t: NOW + skew });
			}),
		);
	});
	it("refuses a changed body, another secret or a changed timestamp", () => {
		fc.assert(
			fc.property(fc.string(), fc.string({ minLength: 1 }), (body, extra) => {
				const header = signPayload(SECRET, body, NOW);
				expect(verifySignature(header, body + extra, SECRET, NOW)).toEqual({ ok: false, problem: "MISMATCH" });
				expect(verifySignature(header, body, `${SECRET}x`, NOW)).toEqual({ ok: false, problem: "MISMATCH" });
				expect(verifySignature(header.replace(`t=${NOW}`, `t=${NOW + 1}`), body, SECRET, NOW)).toEqual({ ok: false, problem: "MISMATCH" });
			}),
		);
	});
	it("refuses a stale or future timestamp even when correctly signed (no late replay)", () => {
		expect(verifySignature(signPayload(SECRET, "{}", NOW - 301), "{}", SECRET, NOW)).toEqual({ ok: false, problem: "STALE" });
		expect(verifySignature(signPayload(SECRET, "{}", NOW + 301), "{}", SECRET, NOW)).toEqual({ ok: false, problem: "STALE" });
	});
	it("accepts any one matching v1 (a secret being rotated) and calls malformed headers malformed", () => {
		const good = signPayload(SECRET, "{}", NOW);
		expect(verifySignature(`${good},v1=${"0".repeat(64)}`, "{}", SECRET, NOW).ok).toBe(true);
		for (const header of [undefined, "", "t=abc,v1=00", `v1=${"0".repeat(64)}`, `t=${NOW}`, `t=${NOW},v1`, "garbage", `t=${NOW},v1=a=b`]) {
			expect(verifySignature(header, "{}", SECRET, NOW)).toEqual({ ok: false, problem: "MALFORMED" });
		}
		expect(verifySignature(`t=${NOW},v1=zz`, "{}", SECRET, NOW)).toEqual({ ok: false, problem: "MISMATCH" });
	});
});

describe("reading a webhook request", () => {
	const signed = (body: string, t = NOW) => [signPayload(SECRET, body, t), Buffer.from(body)] as const;
	it("passes a signed event's id, type and object", () => {
		const [header, raw] = signed(JSON.stringify({ id: "evt_1", type: "checkout.session.completed", data: { object: { id: "cs_1" } } }));
		expect(readWebhook(header, raw, SECRET, NOW)).toEqual({ ok: true, event: { id: "evt_1", type: "checkout.session.completed", object: { id: "cs_1" } } });
	});
	it("answers 400 to a malformed signature or body, 401 to a wrong or stale one", () => {
		const body = JSON.stringify({ id: "evt_1", type: "x" });
		expect(readWebhook(undefined, Buffer.from(body), SECRET, NOW)).toMatchObject({ ok: false, status: 400, body: { error: { code: "WEBHOOK_SIGNATURE_MALFORMED" } } });
		expect(readWebhook(signPayload("whsec_forged_secret_000000", body, NOW), Buffer.from(body), SECRET, NOW)).toMatchObject({ status: 401, body: { error: { code: "WEBHOOK_SIGNATURE_INVALID" } } });
		expect(readWebhook(...signed(body, NOW - 3600), SECRET, NOW)).toMatchObject({ status: 401, body: { error: { code: "WEBHOOK_SIGNATURE_STALE" } } });
		expect(readWebhook(...signed("{not json"), SECRET, NOW)).toMatchObject({ status: 400, body: { error: { code: "INVALID_JSON" } } });
		for (const bad of ["[]", "null", "{}", JSON.stringify({ id: 1, type: "x" }), JSON.stringify({ id: "e", type: "" })]) {
			expect(readWebhook(...signed(bad), SECRET, NOW)).toMatchObject({ status: 400, body: { error: { code: "VALIDATION_ERROR" } } });
		}
	});
});
