import { randomUUID } from "node:crypto";
import { SMTPServer } from "smtp-server";
import { ProbeProducer } from "../fixtures/probe.services";
import { QueryTypes } from "sequelize";
import { createEnvelope } from "../../lib/events/envelope";
import { runtimeOf } from "../../lib/runtime";
import { eventually, freePort, startTestNode, tempDir, type TestNode } from "../../scripts/harness/node";

interface Mail {
	to: string;
	raw: string;
}

/** A real SMTP server on loopback that keeps what it receives. */
function startSmtp(port: number): Promise<{ mails: Mail[]; close(): Promise<void> }> {
	const mails: Mail[] = [];
	const server = new SMTPServer({
		authOptional: true,
		disabledCommands: ["STARTTLS", "AUTH"],
		logger: false,
		onData(stream, session, callback) {
			let raw = "";
			stream.on("data", chunk => (raw += chunk));
			stream.on("end", () => {
				mails.push({ to: session.envelope.rcptTo.map(r => r.address).join(","), raw });
				callback();
			});
		},
	});
	return new Promise(resolve => server.listen(port, "127.0.0.1", () => resolve({ mails, close: () => new Promise<void>(r => server.close(() => r())) })));
}

const ADDRESS = { name: "N", line1: "L", city: "C", postalCode: "P", country: "DE" };
let node: TestNode;
let smtpPort: number;
let smtp: Awaited<ReturnType<typeof startSmtp>> | undefined;
const data = tempDir();
const call = <T = any>(action: string, params: Record<string, any> = {}) => node.broker.call<T, Record<string, any>>(action, params);
const titles = async (userId: string) => (await call("notification.list", { userId, pageSize: 100 })).rows.map((n: any) => n.title).reverse();

beforeAll(async () => {
	smtpPort = await freePort();
	// The mail server is down when the first orders go through.
	node = await startTestNode({ DATA_DIR: data.dir, SMTP_URL: `smtp://127.0.0.1:${smtpPort}`, SAGA_STEP_TIMEOUT_MS: "5000" }, [ProbeProducer]);
});
afterAll(async () => {
	await node?.stop();
	await smtp?.close();
	data.remove();
});

describe("notifications", () => {
	let orderId: string;

	it("tells the owner every step of a checkout, and the saga never waits for the mail server", async () => {
		const p = await call("inventory.create", { sku: "N-1", name: "Notable", category: "n", price: 12000, stock: 5 });
		const o = await call("order.create", {
			userId: "nina",
			items: [{ productId: p.id, quantity: 1 }],
			shippingAddress: ADDRESS,
			customer: { name: "Nina", email: "nina@example.com" },
			payment: { method: "CARD", cardToken: "tok_visa" },
		});
		orderId = o.id;
		await eventually("CONFIRMED while SMTP is down", async () => (await call("order.get", { orderId })).status === "CONFIRMED");
		await call("order.dispatch", { orderId, courier: "UPS", trackingNumber: "1Z999" });
		await call("order.deliver", { orderId });
		await eventually("every notification", async () => (await titles("nina")).length === 6);
		expect(await titles("nina")).toEqual(expect.arrayContaining(["Order placed", "Payment received", "Order confirmed", "Order dispatched", "Order delivered", "A voucher for you"]));
		const all = (await call("notification.list", { userId: "nina", pageSize: 100 })).rows;
		expect(all.find((n: any) => n.title === "Order dispatched")).toMatchObject({ type: "DISPATCH", orderId, isRead: false, message: expect.stringContaining("UPS, tracking number 1Z999") });
		expect(all.find((n: any) => n.title === "Payment received").message).toContain("120.00 EUR");
		expect(all.find((n: any) => n.type === "VOUCHER").message).toMatch(/voucher VCH-[A-Z0-9-]+ is worth 5\.00 EUR/);
	});

	it("sends the same by e-mail once the mail server answers, retrying the failed sends", async () => {
		smtp = await startSmtp(smtpPort);
		const mails = await eventually("six e-mails", async () => smtp!.mails.length >= 6 && smtp!.mails, 30000);
		expect(mails.every(m => m.to === "nina@example.com")).toBe(true);
		expect(mails.map(m => /Subject: (.*)/.exec(m.raw)?.[1]).sort()).toEqual(["A voucher for you", "Order confirmed", "Order delivered", "Order dispatched", "Order placed", "Payment received"]);
	});

	it("explains a failed payment and a cancellation with its refund", async () => {
		const p = await call("inventory.create", { sku: "N-2", name: "Other", category: "n", price: 500, stock: 5 });
		const failed = await call("order.create", { userId: "omar", items: [{ productId: p.id, quantity: 1 }], shippingAddress: ADDRESS, payment: { method: "CARD", cardToken: "tok_chargeDeclined" } });
		await eventually("payment failed", async () => (await titles("omar")).includes("Payment failed"));
		const note = (await call("notification.list", { userId: "omar" })).rows.find((n: any) => n.title === "Payment failed");
		expect(note).toMatchObject({ type: "PAYMENT", orderId: failed.id, message: expect.stringContaining("card_declined (PAYMENT_DECLINED)") });

		const paid = await call("order.create", { userId: "omar", items: [{ productId: p.id, quantity: 1 }], shippingAddress: ADDRESS, payment: { method: "CARD", cardToken: "tok_visa" } });
		await eventually("confirmed", async () => (await call("order.get", { orderId: paid.id })).status === "CONFIRMED");
		await call("order.cancel", { orderId: paid.id, userId: "omar" });
		await eventually("cancelled and refunded", async () => {
			const t = await titles("omar");
			return t.includes("Order cancelled") && t.includes("Refund issued");
		});
	});

	it("does not wait for order.created: a payment event that overtakes it is notified at once and mailed once the address arrives", async () => {
		const orderId = randomUUID();
		const emit = (eventName: string, data: Record<string, any>) => call("probe-producer.emit", { eventName, data });
		await emit("payment.authorized", { orderId, userId: "pia", paymentId: randomUUID(), method: "CARD", amount: 900, currency: "EUR" });
		await eventually("the payment notification", async () => (await titles("pia")).includes("Payment received"));
		const mailsBefore = smtp!.mails.length;
		await emit("order.created", { orderId, userId: "pia", total: 900, currency: "EUR", customer: { name: "Pia", email: "pia@example.com" } });
		const mails = await eventually("both e-mails", async () => {
			const toPia = smtp!.mails.filter(m => m.to === "pia@example.com");
			return toPia.length === 2 && toPia;
		});
		expect(mails.map(m => /Subject: (.*)/.exec(m.raw)?.[1]).sort()).toEqual(["Order placed", "Payment received"]);
		expect(mails.every(m => m.raw.includes("Hello Pia,"))).toBe(true);
		expect(smtp!.mails.length).toBe(mailsBefore + 2);
	});

	it("drops the waiting e-mails of an order whose customer left no address", async () => {
		const orderId = randomUUID();
		const emit = (eventName: string, data: Record<string, any>) => call("probe-producer.emit", { eventName, data });
		await emit("payment.failed", { orderId, userId: "quinn", code: "PAYMENT_DECLINED", reason: "card_declined" });
		await eventually("the payment notification", async () => (await titles("quinn")).includes("Payment failed"));
		await emit("order.created", { orderId, userId: "quinn", total: 900, currency: "EUR" });
		await eventually("the order notification", async () => (await titles("quinn")).includes("Order placed"));
		const { sequelize } = await runtimeOf(node.broker).database();
		expect(await sequelize.query(`SELECT status FROM notification.emails WHERE order_id = :orderId`, { replacements: { orderId }, type: QueryTypes.SELECT })).toEqual([]);
	});

	it("marks the caller's notification read, lists unread ones, and hides others' as 404", async () => {
		const [first] = (await call("notification.list", { userId: "nina" })).rows;
		const before = (await call("notification.list", { userId: "nina", unread: true })).total;
		expect(await call("notification.markRead", { id: first.id, userId: "nina" })).toMatchObject({ id: first.id, isRead: true });
		expect((await call("notification.list", { userId: "nina", unread: "true" })).total).toBe(before - 1);
		await expect(call("notification.markRead", { id: first.id, userId: "omar" })).rejects.toMatchObject({ code: 404 });
	});

	it("notifies once per event, however often it is delivered, and raises failed refunds to the admins", async () => {
		const before = (await titles("nina")).length;
		const event = createEnvelope("order.completed", { orderId, userId: "nina", total: 12000, currency: "EUR" }, { service: "order", nodeID: "test" });
		await node.broker.emit("order.completed", event);
		await node.broker.emit("order.completed", event);
		await eventually("one more", async () => (await titles("nina")).length === before + 1);
		await new Promise(r => setTimeout(r, 200));
		expect(await titles("nina")).toHaveLength(before + 1);
		await call("probe-producer.emit", { eventName: "payment.refund_failed", data: { orderId: randomUUID(), paymentId: randomUUID(), amount: 100, currency: "EUR", reason: "x", error: "503" } });
		await eventually("an admin notification", async () => (await call("notification.list", { userId: "ops", includeAdmin: true })).rows.some((n: any) => n.title === "Refund failed"));
		expect((await call("notification.list", { userId: "ops" })).total).toBe(0);
	});
});
