/**
 * Hosted card payments over real HTTP (issue 13): a payment session for an order, the mock
 * gateway's payment page fetched and its form submitted as a browser would, the redirect back, the
 * verification and the signed webhook racing to apply the outcome once, each test card, expiry,
 * cancellation, and webhooks that are forged, stale, malformed, unknown or replayed.
 */
import { randomUUID } from "node:crypto";
import type { MockGateway } from "../../lib/mock-gateway";
import { DEV_WEBHOOK_SECRET } from "../../lib/config";
import { signPayload } from "../../lib/webhook-signature";
import { eventually, freePort, startTestNode, tempDir, type TestNode } from "../../scripts/harness/node";
import { http, tokenFor } from "../../scripts/harness/http";
import { checkedApi, type CheckedApi } from "../helpers/openapi";

const SHOP = "https://shop.example.com";
const ADDRESS = { name: "Ada", line1: "1 Main St", city: "Berlin", postalCode: "10115", country: "DE" };
const data = tempDir();
const admin = tokenFor("ops", "admin");
const carol = tokenFor("carol");
const dave = tokenFor("dave");
let node: TestNode;
let mock: MockGateway;
let api: CheckedApi;
let metricsUrl: string;
let productId: string;

const redirects = { successUrl: `${SHOP}/paid?session={SESSION_ID}`, cancelUrl: `${SHOP}/cart` };
const openSession = (orderId: string, token = carol, body: Record<string, unknown> = redirects) => api("POST", `/api/orders/${orderId}/payment-session`, { token, body });
const verify = (sessionId: string, token = carol) => api("POST", `/api/payment-sessions/${sessionId}/verify`, { token });
const order = async (orderId: string, token = carol) => (await api("GET", `/api/orders/${orderId}`, { token })).body;
const untilOrder = (orderId: string, what: string, ok: (o: any) => boolean) =>
	eventually(`order ${what}`, async () => {
		const o = await order(orderId);
		return ok(o) && o;
	});
const eventsOf = async (orderId: string) => ((await api("GET", `/api/orders/${orderId}/timeline`, { token: admin })).body as Array<{ eventName: string }>).map(e => e.eventName);
const chargesOf = (sessionId: string) => mock.charges().filter(c => c.sessionId === sessionId);
const countOf = (names: string[], name: string) => names.filter(n => n === name).length;

/** An order waiting for payment (no payment method at checkout). */
async function pendingOrder(quantity = 1): Promise<string> {
	const res = await api("POST", "/api/orders", { token: carol, body: { items: [{ productId, quantity }], shippingAddress: ADDRESS } });
	expect(res.status).toBe(201);
	await untilOrder(res.body.id, "PAYMENT_PENDING", o => o.status === "PAYMENT_PENDING");
	return res.body.id;
}

/** What a browser does on the payment page: reads the form, picks the card's radio, submits, and does not follow the redirect. */
async function payOnPage(url: string, card: string) {
	const page = await fetch(url);
	const html = await page.text();
	expect(page.status).toBe(200);
	expect(page.headers.get("content-type")).toMatch(/text\/html/);
	const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1];
	expect(action).toBeDefined();
	expect(html).toContain(`value="${card}"`);
	const res = await fetch(new URL(action!, url), { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ card }).toString(), redirect: "manual" });
	return { status: res.status, location: res.headers.get("location"), html: await res.text() };
}

/** Sends a webhook as the gateway would (signed now unless told otherwise). */
function sendWebhook(event: unknown, opts: { secret?: string; t?: number; header?: string } = {}) {
	const raw = JSON.stringify(event);
	const header = opts.header ?? signPayload(opts.secret ?? DEV_WEBHOOK_SECRET, raw, opts.t);
	return http(node.url, "POST", "/api/webhooks/payment-gateway", { raw, headers: { "Content-Type": "application/json", "Gateway-Signature": header } });
}

beforeAll(async () => {
	const metricsPort = await freePort();
	node = await startTestNode({ DATA_DIR: data.dir, RATE_LIMIT: "100000", METRICS_PORT: String(metricsPort), PAYMENT_REDIRECT_ORIGINS: SHOP, SAGA_STEP_TIMEOUT_MS: "5000" });
	metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
	mock = (node.broker.getLocalService("payment") as any).mock;
	({ api } = await checkedApi(node.url));
	const res = await api("POST", "/api/products", { token: admin, body: { sku: `HOSTED-${randomUUID().slice(0, 8)}`, name: "Hosted thing", category: "hosted", price: 4200, stock: 1000 } });
	productId = res.body.id;
});
afterEach(() => mock.releaseWebhooks());
afterAll(async () => {
	await node?.stop();
	data.remove();
});

describe("a hosted payment session", () => {
	it("runs the whole flow: session → payment page → redirect → verify → CONFIRMED; the webhook after it changes nothing", async () => {
		const orderId = await pendingOrder();
		mock.holdWebhooks();
		const created = await openSession(orderId);
		expect(created.status).toBe(201);
		const session = created.body;
		expect(session).toMatchObject({ orderId, status: "open", paymentStatus: "unpaid", amount: 4200, currency: "EUR", url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/checkout\/cs_/) });
		// It never outlives the stock it pays for.
		const reservation = await node.broker.call<{ expiresAt: string }, Record<string, unknown>>("inventory.reservation", { orderId });
		expect(new Date(session.expiresAt).getTime()).toBeLessThanOrEqual(new Date(reservation.expiresAt).getTime());
		// Asked again while it is open: the same session, not a second one.
		expect((await openSession(orderId)).body.id).toBe(session.id);
		expect(await order(orderId)).toMatchObject({ status: "PAYMENT_PENDING", paymentStatus: "PENDING", payment: { method: "HOSTED_CARD", sessionId: session.id } });
		// The page offers the test cards; paying sends the browser back to the shop with the session id.
		const paid = await payOnPage(session.url, "tok_visa");
		expect(paid.status).toBe(303);
		expect(paid.location).toBe(`${SHOP}/paid?session=${session.id}`);
		const verified = await verify(new URL(paid.location!).searchParams.get("session")!);
		expect(verified.status).toBe(200);
		expect(verified.body).toMatchObject({ id: session.id, status: "complete", paymentStatus: "paid" });
		const confirmed = await untilOrder(orderId, "CONFIRMED", o => o.status === "CONFIRMED");
		expect(confirmed).toMatchObject({ paymentStatus: "AUTHORIZED", payment: { method: "HOSTED_CARD", paymentId: expect.any(String) } });
		// The webhook comes late: acknowledged, and no second payment.
		mock.releaseWebhooks();
		await eventually("the completed webhook delivered", async () => mock.webhooks().find(w => w.event.data.object.id === session.id && w.event.type === "checkout.session.completed")?.status === "delivered");
		expect(await verify(session.id)).toMatchObject({ status: 200, body: { status: "complete" } });
		expect(chargesOf(session.id)).toHaveLength(1);
		const events = await eventsOf(orderId);
		expect(countOf(events, "payment.authorized")).toBe(1);
		expect(events).toEqual(expect.arrayContaining(["payment.session_created", "payment.authorized", "stock.committed", "order.confirmed"]));
	});

	it("is applied by the webhook alone when the customer never comes back, and a later verification is a no-op", async () => {
		const orderId = await pendingOrder();
		const session = (await openSession(orderId)).body;
		expect((await payOnPage(session.url, "tok_visa")).status).toBe(303);
		await untilOrder(orderId, "CONFIRMED", o => o.status === "CONFIRMED");
		expect((await verify(session.id)).body).toMatchObject({ status: "complete", paymentStatus: "paid" });
		expect(countOf(await eventsOf(orderId), "payment.authorized")).toBe(1);
		expect(chargesOf(session.id)).toHaveLength(1);
	});

	it("pays once when the verification and the webhook arrive together", async () => {
		const orderId = await pendingOrder();
		mock.holdWebhooks();
		const session = (await openSession(orderId)).body;
		await payOnPage(session.url, "tok_visa");
		mock.releaseWebhooks();
		const answers = await Promise.all([verify(session.id), verify(session.id)]);
		expect(answers.map(a => a.status)).toEqual([200, 200]);
		await untilOrder(orderId, "CONFIRMED", o => o.status === "CONFIRMED");
		await eventually("the webhook delivered", async () => mock.webhooks().some(w => w.event.data.object.id === session.id && w.status === "delivered"));
		await new Promise(r => setTimeout(r, 300)); // any second effect would be on its way by now
		expect(countOf(await eventsOf(orderId), "payment.authorized")).toBe(1);
	});

	it("keeps a declined customer on the page with the reason, lets another card pay, and never charges the declined ones", async () => {
		const orderId = await pendingOrder();
		const session = (await openSession(orderId)).body;
		const declined = await payOnPage(session.url, "tok_chargeDeclined");
		expect(declined.status).toBe(402);
		expect(declined.html).toContain("Your card was declined.");
		const short = await payOnPage(session.url, "tok_insufficientFunds");
		expect(short.status).toBe(402);
		expect(short.html).toContain("insufficient funds");
		expect((await verify(session.id)).body).toMatchObject({ status: "open", paymentStatus: "unpaid" });
		expect(await order(orderId)).toMatchObject({ status: "PAYMENT_PENDING", paymentStatus: "PENDING" });
		expect((await payOnPage(session.url, "tok_visa")).status).toBe(303);
		await untilOrder(orderId, "CONFIRMED", o => o.status === "CONFIRMED");
		expect(chargesOf(session.id).map(c => c.token)).toEqual(["tok_visa"]);
	});

	it("lets the order wait on after its session expires, and pays through a new one", async () => {
		const orderId = await pendingOrder();
		const first = (await openSession(orderId)).body;
		// The gateway ends the session (as at its expiry) and says so by webhook.
		const ended = await fetch(`${mock.url}/checkout/sessions/${first.id}/expire`, { method: "POST", headers: { "Idempotency-Key": randomUUID() } });
		expect(((await ended.json()) as { status: string }).status).toBe("expired");
		const waiting = await untilOrder(orderId, "its session cleared", o => o.paymentStatus === "NOT_STARTED");
		expect(waiting).toMatchObject({ status: "PAYMENT_PENDING", payment: { failureReason: "The payment session expired" } });
		expect(waiting.payment.sessionId).toBeUndefined();
		expect((await verify(first.id)).body.status).toBe("expired");
		const notes = (await api("GET", "/api/notifications", { token: carol })).body.rows.filter((n: any) => n.orderId === orderId).map((n: any) => n.title);
		expect(notes).toEqual(expect.arrayContaining(["Payment page ready", "Payment page expired"]));
		// The expired page can no longer pay.
		expect((await fetch(`${first.url}/pay`, { method: "POST", body: "card=tok_visa", headers: { "Content-Type": "application/x-www-form-urlencoded" } })).status).toBe(409);
		const second = (await openSession(orderId)).body;
		expect(second.id).not.toBe(first.id);
		expect((await payOnPage(second.url, "tok_visa")).status).toBe(303);
		await untilOrder(orderId, "CONFIRMED", o => o.status === "CONFIRMED");
		expect(await eventsOf(orderId)).toEqual(expect.arrayContaining(["payment.session_created", "payment.session_expired", "payment.authorized"]));
	});

	it("is voided when the order is cancelled, and a payment made just before the cancel is refunded", async () => {
		const unpaid = await pendingOrder();
		const open = (await openSession(unpaid)).body;
		expect((await api("POST", `/api/orders/${unpaid}/cancel`, { token: carol })).status).toBe(200);
		await eventually("the session voided at the gateway", async () => mock.sessions().find(s => s.id === open.id)?.status === "expired");

		const paidFirst = await pendingOrder();
		mock.holdWebhooks(); // the shop has not heard of the payment when the customer cancels
		const session = (await openSession(paidFirst)).body;
		expect((await payOnPage(session.url, "tok_visa")).status).toBe(303);
		expect((await api("POST", `/api/orders/${paidFirst}/cancel`, { token: carol })).status).toBe(200);
		const refunded = await untilOrder(paidFirst, "REFUNDED", o => o.paymentStatus === "REFUNDED");
		expect(refunded.status).toBe("CANCELLED");
		const [charge] = chargesOf(session.id);
		expect(charge.refunded).toBe(charge.amount);
		expect(charge.refunds).toHaveLength(1);
	});

	it("refunds a payment taken before the order ended even when its payment.authorized has not reached the order (the void's answer names it)", async () => {
		const orderId = await pendingOrder();
		const session = (await openSession(orderId)).body;
		const relay = (node.broker.getLocalService("payment") as any).relay;
		await relay.stop(); // payment.authorized stays in the payment outbox: the order never hears of the payment
		try {
			expect((await payOnPage(session.url, "tok_visa")).status).toBe(303);
			expect((await verify(session.id)).body).toMatchObject({ status: "complete", paymentStatus: "paid" });
			expect(await order(orderId)).toMatchObject({ status: "PAYMENT_PENDING", paymentStatus: "PENDING" });
			expect((await api("POST", `/api/orders/${orderId}/cancel`, { token: carol })).status).toBe(200);
			const refunding = await untilOrder(orderId, "its refund", o => o.paymentStatus === "REFUND_PENDING" || o.paymentStatus === "REFUNDED");
			expect(refunding.status).toBe("CANCELLED");
			await eventually("the charge refunded at the gateway", async () => chargesOf(session.id)[0]?.refunded === 4200);
		} finally {
			relay.start();
		}
		// The event arrives late and changes nothing: one refund.
		await eventually("payment.authorized handled", async () => countOf(await eventsOf(orderId), "payment.authorized") === 1);
		await untilOrder(orderId, "REFUNDED", o => o.paymentStatus === "REFUNDED");
		expect(chargesOf(session.id)[0].refunds).toHaveLength(1);
	});

	it("gives back a second charge: a session paid for an order that was paid meanwhile another way is refunded, the order keeps its one payment", async () => {
		const orderId = await pendingOrder();
		mock.holdWebhooks();
		const session = (await openSession(orderId)).body;
		expect((await payOnPage(session.url, "tok_visa")).status).toBe(303);
		// The order is paid by its wallet before the shop hears of the session (as if the gateway had charged a session it should not have).
		await node.broker.call("wallet.credit", { userId: "carol", amount: 4200, reason: "TOP_UP", idempotencyKey: randomUUID() });
		expect(await node.broker.call("payment.authorize", { orderId, userId: "carol", amount: 4200, currency: "EUR", method: "WALLET" })).toMatchObject({ ok: true, method: "WALLET" });
		expect((await verify(session.id)).body).toMatchObject({ status: "complete", paymentStatus: "paid" });
		await eventually("the second charge refunded", async () => chargesOf(session.id)[0]?.refunded === 4200);
		expect(chargesOf(session.id)[0].refunds).toHaveLength(1);
		const confirmed = await untilOrder(orderId, "CONFIRMED", o => o.status === "CONFIRMED");
		expect(confirmed.paymentStatus).toBe("AUTHORIZED");
		mock.releaseWebhooks(); // the late webhook changes nothing either
		await eventually("the webhook delivered", async () => mock.webhooks().some(w => w.event.data.object.id === session.id && w.status === "delivered"));
		expect(countOf(await eventsOf(orderId), "payment.authorized")).toBe(1);
		expect(chargesOf(session.id)[0].refunds).toHaveLength(1);
	});

	it("refuses what it must: a foreign redirect (400), an order not waiting for payment (409), someone else's order or session (404)", async () => {
		const orderId = await pendingOrder();
		for (const body of [{ ...redirects, successUrl: "https://evil.example.com/x" }, { ...redirects, cancelUrl: "javascript:alert(1)" }, { successUrl: `${SHOP}/ok` }]) {
			const res = await openSession(orderId, carol, body);
			expect(res.status).toBe(400);
			expect(res.body.error.code).toBe("VALIDATION_ERROR");
		}
		expect(await order(orderId)).toMatchObject({ paymentStatus: "NOT_STARTED" });
		expect((await openSession(orderId, dave)).status).toBe(404);
		const session = (await openSession(orderId)).body;
		expect((await verify(session.id, dave)).status).toBe(404);
		expect((await verify("cs_doesnotexist")).status).toBe(404);
		expect((await api("POST", `/api/orders/${orderId}/process-payment`, { token: carol, body: { method: "WALLET" } })).status).toBe(409);
		await payOnPage(session.url, "tok_visa");
		await untilOrder(orderId, "CONFIRMED", o => o.status === "CONFIRMED");
		const again = await openSession(orderId);
		expect(again.status).toBe(409);
		expect(again.body.error.code).toBe("ORDER_NOT_PAYABLE");
	});
});

describe("the payment gateway's webhook", () => {
	it("refuses forged, stale and malformed webhooks (400/401) and changes nothing", async () => {
		const orderId = await pendingOrder();
		mock.holdWebhooks();
		const session = (await openSession(orderId)).body;
		await payOnPage(session.url, "tok_visa");
		const genuine = mock.webhooks().find(w => w.event.data.object.id === session.id)!.event;
		const forged = await sendWebhook(genuine, { secret: "whsec_someone_elses_secret" });
		expect(forged.status).toBe(401);
		expect(forged.body.error.code).toBe("WEBHOOK_SIGNATURE_INVALID");
		const stale = await sendWebhook(genuine, { t: Math.floor(Date.now() / 1000) - 600 });
		expect(stale.status).toBe(401);
		expect(stale.body.error.code).toBe("WEBHOOK_SIGNATURE_STALE");
		expect((await sendWebhook(genuine, { header: "v1=abc" })).status).toBe(400);
		expect((await http(node.url, "POST", "/api/webhooks/payment-gateway", { raw: JSON.stringify(genuine), headers: { "Content-Type": "application/json" } })).status).toBe(400);
		const notJson = "{oops";
		expect((await http(node.url, "POST", "/api/webhooks/payment-gateway", { raw: notJson, headers: { "Gateway-Signature": signPayload(DEV_WEBHOOK_SECRET, notJson) } })).status).toBe(400);
		await new Promise(r => setTimeout(r, 300));
		expect(await order(orderId)).toMatchObject({ status: "PAYMENT_PENDING", paymentStatus: "PENDING" });
		expect(await eventsOf(orderId)).not.toContain("payment.authorized");
		// The genuine one, sent twice (a replay): one payment.
		expect((await sendWebhook(genuine)).body).toEqual({ received: true, duplicate: false });
		expect((await sendWebhook(genuine)).body).toEqual({ received: true, duplicate: true });
		await untilOrder(orderId, "CONFIRMED", o => o.status === "CONFIRMED");
		expect(countOf(await eventsOf(orderId), "payment.authorized")).toBe(1);
	});

	it("acknowledges and ignores an event type it does not handle, or a session it does not know", async () => {
		expect((await sendWebhook({ id: "evt_other", type: "customer.created", data: { object: {} } })).body).toEqual({ received: true, ignored: true });
		const unknown = { id: "cs_unknown", object: "checkout.session", status: "complete", payment_status: "paid", amount_total: 100, currency: "eur", expires_at: 2_000_000_000, charge: "ch_x", url: "", client_reference_id: null };
		expect(await sendWebhook({ id: "evt_unknown_session", type: "checkout.session.completed", data: { object: unknown } })).toMatchObject({ status: 200, body: { received: true } });
	});

	it("counts sessions by outcome on /metrics", async () => {
		const text = await (await fetch(metricsUrl)).text();
		for (const outcome of ["CREATED", "COMPLETED", "EXPIRED"]) expect(text).toMatch(new RegExp(`checkout_payment_sessions_total\\{[^}]*outcome="${outcome}"[^}]*\\} [1-9]`));
	});
});
