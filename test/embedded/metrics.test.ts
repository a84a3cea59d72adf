/**
 * The business metrics in the Prometheus text a scraper reads, after real checkouts.
 */
import { randomUUID } from "node:crypto";
import { eventually, freePort, startTestNode, tempDir, type TestNode } from "../../scripts/harness/node";
import { readEvents, tokenFor } from "../../scripts/harness/http";

const ADDRESS = { name: "N", line1: "L", city: "C", postalCode: "P", country: "DE" };
const data = tempDir();
let node: TestNode;
let metricsUrl: string;
const call = <T = any>(action: string, params: Record<string, any> = {}) => node.broker.call<T, Record<string, any>>(action, params);

/** The value of one sample line, found by metric name and label fragments. */
function sample(text: string, name: string, ...labels: string[]): number | undefined {
	const line = text.split("\n").find(l => l.startsWith(`${name}{`) && labels.every(f => l.includes(f)));
	return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

beforeAll(async () => {
	const port = await freePort();
	metricsUrl = `http://127.0.0.1:${port}/metrics`;
	node = await startTestNode({ DATA_DIR: data.dir, METRICS_PORT: String(port), PAYMENT_TIMEOUT_MS: "200", PAYMENT_RETRIES: "0" });
});
afterAll(async () => {
	await node?.stop();
	data.remove();
});

it("counts orders by outcome, saga step latency, payments, reservations, event delay and the outbox backlog", async () => {
	const p = await call("inventory.create", { sku: "MET-1", name: "Metered", category: "m", price: 1000, stock: 1 });
	await call("wallet.credit", { userId: "mia", amount: 1000, reason: "TOP_UP", idempotencyKey: randomUUID() });
	const ok = await call("order.create", { userId: "mia", items: [{ productId: p.id, quantity: 1 }], shippingAddress: ADDRESS, payment: { method: "WALLET" } });
	const declined = await call("order.create", { userId: "mia", items: [{ productId: (await call("inventory.create", { sku: "MET-2", name: "Other", category: "m", price: 10, stock: 5 })).id, quantity: 1 }], shippingAddress: ADDRESS, payment: { method: "CARD", cardToken: "tok_chargeDeclined" } });
	await eventually("both outcomes", async () => (await call("order.get", { orderId: ok.id })).status === "CONFIRMED" && (await call("order.get", { orderId: declined.id })).status === "PAYMENT_FAILED");

	const text = await eventually("the metrics", async () => {
		const body = await (await fetch(metricsUrl)).text();
		return body.includes("checkout_outbox_backlog") && body;
	});
	expect(sample(text, "checkout_orders_total", 'status="CONFIRMED"')).toBe(1);
	expect(sample(text, "checkout_orders_total", 'status="PAYMENT_FAILED"')).toBe(1);
	expect(sample(text, "checkout_payments_total", 'method="WALLET"', 'outcome="AUTHORIZED"')).toBe(1);
	expect(sample(text, "checkout_payments_total", 'method="CARD"', 'outcome="PAYMENT_DECLINED"')).toBe(1);
	expect(sample(text, "checkout_stock_reservations_total", 'outcome="RESERVED"')).toBe(2);
	expect(sample(text, "checkout_saga_step_seconds_count", 'status="CONFIRMED"')).toBe(1);
	expect(sample(text, "checkout_event_handling_delay_seconds_count", 'service="inventory"', 'event="order.created"')).toBe(2);
	expect(sample(text, "checkout_outbox_backlog", 'service="order"')).toBeGreaterThanOrEqual(0);
	expect(text).toContain("# HELP checkout_orders_total");

	// The gateway serves the same text on its own port.
	const viaGateway = await fetch(`${node.url}/metrics`);
	expect(viaGateway.status).toBe(200);
	expect(await viaGateway.text()).toContain("checkout_orders_total");
});

it("reads the order for a live stream once, as it opens, and pushes each transition as the order service announced it (Moleculer's request count)", async () => {
	const p = await call("inventory.create", { sku: "MET-3", name: "Streamed", category: "m", price: 500, stock: 1 });
	await call("wallet.credit", { userId: "sam", amount: 500, reason: "TOP_UP", idempotencyKey: randomUUID() });
	const order = await call("order.create", { userId: "sam", items: [{ productId: p.id, quantity: 1 }], shippingAddress: ADDRESS });
	await eventually("the reservation", async () => (await call("order.get", { orderId: order.id })).status === "PAYMENT_PENDING");
	const reads = async () => {
		const text = await (await fetch(metricsUrl)).text();
		return text
			.split("\n")
			.filter(l => l.startsWith("moleculer_request_total{") && l.includes('action="order.get"'))
			.reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
	};
	const before = await reads();
	const streaming = readEvents(`${node.url}/api/orders/${order.id}/stream`, tokenFor("sam"), events => events.some(e => e.data.status === "CONFIRMED"));
	await eventually("the stream to open", async () => (await reads()) > before);
	await call("order.processPayment", { orderId: order.id, userId: "sam", method: "WALLET" });
	const { events } = await streaming;
	expect(events.map(e => e.data.status)).toEqual(["PAYMENT_PENDING", "PAYMENT_SUCCESS", "CONFIRMED"]);
	// One read as it opened; it was 2 to 4 when each transition was read back.
	expect((await reads()) - before).toBe(1);
	// What was pushed is the order as the database holds it, field for field.
	expect(events.at(-1)!.data.order).toEqual(await call("order.get", { orderId: order.id }));
	// A hint without the order (a node of an older version) is read back: the read finds nothing new
	// and sends nothing; the next transition is pushed again.
	const opened = await reads();
	const again = readEvents(`${node.url}/api/orders/${order.id}/stream`, tokenFor("sam"), events => events.some(e => e.data.status === "DISPATCHED"));
	await eventually("the second stream to open", async () => (await reads()) > opened);
	await node.broker.broadcast("order.status-changed", { orderId: order.id, status: "DISPATCHED" });
	await eventually("the read back", async () => (await reads()) > opened + 1);
	await call("order.dispatch", { orderId: order.id, courier: "DHL", trackingNumber: "T-1" });
	expect((await again).events.map(e => [e.event, e.data.status])).toEqual([
		["order", "CONFIRMED"],
		["status", "DISPATCHED"],
	]);
	expect((await reads()) - opened).toBe(2);
});
