import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { runtimeOf } from "../../lib/runtime";
import { ProbeProducer } from "../fixtures/probe.services";
import { eventually, startTestNode, tempDir, type TestNode } from "../../scripts/harness/node";
import { watchStatements } from "../../scripts/harness/statements";

let node: TestNode;
const data = tempDir();
const call = <T = any>(action: string, params: Record<string, any> = {}) => node.broker.call<T, Record<string, any>>(action, params);

async function product(stock: number, price = 1000) {
	return call("inventory.create", { sku: `T-${randomUUID().slice(0, 8)}`, name: "Test product", category: "test", price, stock });
}
const levels = async (id: string) => {
	const p = await call("inventory.get", { id });
	const [row] = (await call("inventory.levels", { pageSize: 100 })).rows.filter((r: any) => r.productId === id);
	return { ...row, available: p.available };
};
const timeline = (orderId: string) => call<any[]>("audit.timeline", { orderId });

beforeAll(async () => {
	node = await startTestNode({ DATA_DIR: data.dir, SERVICES: "inventory,audit" }, [ProbeProducer]);
});
afterAll(async () => {
	await node?.stop();
	data.remove();
});

describe("catalogue", () => {
	it("is seeded with the demo catalogue on the embedded default's first start", async () => {
		const page = await call("inventory.list", { pageSize: 100 });
		expect(page.total).toBe(20);
		expect(page.rows[0]).toEqual({
			id: expect.any(String),
			sku: expect.any(String),
			name: expect.any(String),
			description: expect.any(String),
			category: expect.any(String),
			price: expect.any(Number),
			currency: "EUR",
			imageUrl: null,
			available: expect.any(Number),
		});
		expect(await call("inventory.seed")).toBe(0); // seeding again adds nothing
	});

	it("filters by category, search and price, sorts and pages", async () => {
		const books = await call("inventory.list", { category: "books", sort: "-price" });
		expect(books.rows.map((p: any) => p.sku)).toEqual(["BOOK-002", "BOOK-001", "BOOK-003"]);
		expect((await call("inventory.list", { search: "MUG" })).rows.map((p: any) => p.sku).sort()).toEqual(["MUG-001", "MUG-002"]);
		expect((await call("inventory.list", { search: "100%_" })).total).toBe(0); // wildcards are literal
		const cheap = await call("inventory.list", { maxPrice: "1500", minPrice: 1300, sort: "price" });
		expect(cheap.rows.map((p: any) => p.price)).toEqual([1350, 1499]);
		const page2 = await call("inventory.list", { page: 2, pageSize: 5, sort: "name" });
		expect(page2).toMatchObject({ page: 2, pageSize: 5, total: 20, totalPages: 4 });
		await expect(call("inventory.list", { sort: "stock" })).rejects.toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
	});

	it("creates a product, refusing a second one with its SKU and another currency", async () => {
		const p = await call("inventory.create", { sku: "NEW-1", name: "New", category: "x", price: 500, stock: 3, imageUrl: "https://example.com/a.png" });
		expect(p).toMatchObject({ sku: "NEW-1", price: 500, currency: "EUR", available: 3, active: true, imageUrl: "https://example.com/a.png" });
		expect(await call("inventory.get", { id: p.id })).toEqual(p);
		await expect(call("inventory.create", { sku: "NEW-1", name: "Again", category: "x", price: 1, stock: 0 })).rejects.toMatchObject({ code: 409, type: "SKU_EXISTS" });
		await expect(call("inventory.create", { sku: "NEW-2", name: "Dollar", category: "x", price: 1, stock: 0, currency: "USD" })).rejects.toMatchObject({ code: 422, type: "CURRENCY_MISMATCH" });
	});

	it.each([
		["a negative price", { price: -1 }],
		["a price with cents as a fraction", { price: 9.99 }],
		["negative stock", { stock: -1 }],
		["an empty name", { name: "" }],
		["a SKU with spaces", { sku: "A B" }],
	])("refuses a product with %s", async (_what, change) => {
		await expect(call("inventory.create", { sku: `S-${randomUUID().slice(0, 6)}`, name: "N", category: "c", price: 100, stock: 1, ...change })).rejects.toMatchObject({
			code: 422,
			type: "VALIDATION_ERROR",
		});
	});

	it("answers 404 for an unknown product and updates a known one", async () => {
		await expect(call("inventory.get", { id: randomUUID() })).rejects.toMatchObject({ code: 404, type: "NOT_FOUND" });
		const p = await product(1);
		expect(await call("inventory.update", { id: p.id, price: 1234, name: "Renamed", active: false })).toMatchObject({ price: 1234, name: "Renamed", active: false });
		await expect(call("inventory.update", { id: randomUUID(), price: 1 })).rejects.toMatchObject({ code: 404 });
	});

	it("restocks and reports levels", async () => {
		const p = await product(2);
		expect(await call("inventory.restock", { productId: p.id, quantity: 5 })).toMatchObject({ productId: p.id, onHand: 7, reserved: 0, available: 7 });
		await expect(call("inventory.restock", { productId: p.id, quantity: 0 })).rejects.toMatchObject({ type: "VALIDATION_ERROR" });
		await expect(call("inventory.restock", { productId: randomUUID(), quantity: 1 })).rejects.toMatchObject({ code: 404 });
	});
});

describe("reservations", () => {
	it("reserves a quantity equal to the stock", async () => {
		const p = await product(3);
		const orderId = randomUUID();
		expect(await call("inventory.reserve", { orderId, items: [{ productId: p.id, quantity: 3 }] })).toMatchObject({ ok: true, expiresAt: expect.any(String) });
		expect(await levels(p.id)).toMatchObject({ onHand: 3, reserved: 3, available: 0 });
	});

	it("reserves all lines or none, naming every short line", async () => {
		const a = await product(5);
		const b = await product(1);
		const c = await product(2);
		const orderId = randomUUID();
		const r = await call("inventory.reserve", {
			orderId,
			items: [
				{ productId: a.id, quantity: 2 },
				{ productId: b.id, quantity: 2 },
				{ productId: c.id, quantity: 3 },
			],
		});
		expect(r).toEqual({
			ok: false,
			reason: "OUT_OF_STOCK",
			lines: expect.arrayContaining([
				{ productId: b.id, requested: 2, available: 1 },
				{ productId: c.id, requested: 3, available: 2 },
			]),
		});
		expect(r.lines).toHaveLength(2);
		expect(await levels(a.id)).toMatchObject({ reserved: 0, available: 5 });
		// Asked again (a redelivered event), the answer is the same and nothing is taken.
		expect(await call("inventory.reserve", { orderId, items: [{ productId: a.id, quantity: 1 }] })).toEqual(r);
	});

	it("answers a repeated reservation with the first result and reserves once", async () => {
		const p = await product(10);
		const orderId = randomUUID();
		const first = await call("inventory.reserve", { orderId, items: [{ productId: p.id, quantity: 4 }] });
		expect(await call("inventory.reserve", { orderId, items: [{ productId: p.id, quantity: 4 }] })).toEqual(first);
		expect(await levels(p.id)).toMatchObject({ reserved: 4 });
	});

	it("commits a reservation: stock leaves, once", async () => {
		const p = await product(10);
		const orderId = randomUUID();
		await call("inventory.reserve", { orderId, items: [{ productId: p.id, quantity: 4 }] });
		expect(await call("inventory.commit", { orderId })).toEqual({ ok: true });
		expect(await call("inventory.commit", { orderId })).toEqual({ ok: true });
		expect(await levels(p.id)).toMatchObject({ onHand: 6, reserved: 0, available: 6 });
		expect(await call("inventory.reservation", { orderId })).toMatchObject({ status: "COMMITTED", items: [{ productId: p.id, quantity: 4 }] });
	});

	it("releases on payment failure and returns committed stock on cancellation", async () => {
		const p = await product(10);
		const failed = randomUUID();
		await call("inventory.reserve", { orderId: failed, items: [{ productId: p.id, quantity: 3 }] });
		expect(await call("inventory.release", { orderId: failed, reason: "PAYMENT_FAILED" })).toEqual({ status: "RELEASED" });
		expect(await levels(p.id)).toMatchObject({ onHand: 10, reserved: 0 });
		const cancelled = randomUUID();
		await call("inventory.reserve", { orderId: cancelled, items: [{ productId: p.id, quantity: 2 }] });
		await call("inventory.commit", { orderId: cancelled });
		expect(await levels(p.id)).toMatchObject({ onHand: 8, reserved: 0 });
		expect(await call("inventory.release", { orderId: cancelled, reason: "CANCELLED" })).toEqual({ status: "RETURNED" });
		expect(await call("inventory.release", { orderId: cancelled, reason: "CANCELLED" })).toEqual({ status: "RETURNED" });
		expect(await levels(p.id)).toMatchObject({ onHand: 10, reserved: 0 });
	});

	it("keeps a cancellation that arrives first from reserving later", async () => {
		const p = await product(5);
		const orderId = randomUUID();
		expect(await call("inventory.release", { orderId, reason: "CANCELLED" })).toEqual({ status: "RELEASED" });
		expect(await call("inventory.reserve", { orderId, items: [{ productId: p.id, quantity: 1 }] })).toEqual({ ok: false, reason: "RELEASED" });
		expect(await levels(p.id)).toMatchObject({ reserved: 0 });
	});

	it("refuses malformed reservations", async () => {
		const p = await product(5);
		for (const items of [[], [{ productId: p.id, quantity: 0 }], [{ productId: p.id, quantity: 1.5 }], [{ productId: "nope", quantity: 1 }]]) {
			await expect(call("inventory.reserve", { orderId: randomUUID(), items })).rejects.toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
		}
	});

	it("never oversells under concurrent orders", async () => {
		const p = await product(10);
		const results = await Promise.all(Array.from({ length: 30 }, () => call("inventory.reserve", { orderId: randomUUID(), items: [{ productId: p.id, quantity: 1 }] })));
		expect(results.filter(r => r.ok)).toHaveLength(10);
		expect(await levels(p.id)).toMatchObject({ onHand: 10, reserved: 10, available: 0 });
	});

	it("reads fresh availability as soon as stock changes, and keeps the other products' cached", async () => {
		const [p, other] = [await product(4), await product(9)];
		expect((await call("inventory.availability", { productIds: [p.id] }))[0].available).toBe(4);
		expect((await call("inventory.get", { id: p.id })).available).toBe(4);
		expect((await call("inventory.get", { id: other.id })).available).toBe(9);
		// Renamed behind the cache's back: a cached read of `other` still has the old name, one of `p` must be fresh.
		const inventory = node.broker.getLocalService("inventory") as any;
		await inventory.sql(`UPDATE ${inventory.table("products")} SET name = 'Renamed' WHERE id = :id`, { id: other.id });
		await call("inventory.reserve", { orderId: randomUUID(), items: [{ productId: p.id, quantity: 3 }] });
		expect((await call("inventory.availability", { productIds: [p.id] }))[0].available).toBe(1);
		expect((await call("inventory.get", { id: p.id })).available).toBe(1);
		expect((await call("inventory.get", { id: other.id })).name).not.toBe("Renamed");
		expect((await call("inventory.availability", { productIds: [p.id, other.id] })).map((e: any) => [e.available, e.name === "Renamed"])).toEqual([
			[1, false],
			[9, true],
		]);
	});

	it("commits one order and releases an expired one in the same batch, and announces the product's level as the batch leaves it", async () => {
		const inventory = node.broker.getLocalService("inventory") as any;
		const p = await product(5);
		const [late, paid] = [randomUUID(), randomUUID()];
		await call("inventory.reserve", { orderId: late, items: [{ productId: p.id, quantity: 1 }] });
		await call("inventory.reserve", { orderId: paid, items: [{ productId: p.id, quantity: 2 }] });
		// Expired in the batch's own transaction: the sweep cannot release it first (it skips locked rows).
		const results = await inventory.transaction(async (tx: unknown) => {
			await inventory.sql(`UPDATE ${inventory.table("reservations")} SET expires_at = now() - interval '1 second' WHERE order_id = :late`, { late }, tx);
			return inventory.commitMany(tx, [{ orderId: late }, { orderId: paid }]);
		});
		expect(results.get(late)).toEqual({ ok: false, reason: "RESERVATION_GONE" });
		expect(results.get(paid)).toEqual({ ok: true });
		expect(await levels(p.id)).toMatchObject({ onHand: 3, reserved: 0, available: 3 });
		// The new levels are worked out from the locked rows, not read back: the event must still match the row.
		const [last] = await inventory.sql(`SELECT envelope FROM ${inventory.table("outbox")} WHERE event_name = 'stock.updated' AND aggregate_key = :id ORDER BY seq DESC LIMIT 1`, { id: p.id });
		expect(last.envelope.data).toEqual({ productId: p.id, onHand: 3, reserved: 0, available: 3 });
	});
});

describe("the saga's stock steps, driven by events", () => {
	it("reserves on order.created and commits on payment.authorized, once each, with their events", async () => {
		const p = await product(6);
		const orderId = randomUUID();
		const created = { orderId, userId: "u", items: [{ productId: p.id, quantity: 2 }] };
		await call("probe-producer.emit", { eventName: "order.created", data: created });
		await call("probe-producer.emit", { eventName: "order.created", data: created }); // a second order.created for the same order
		await eventually("stock.reserved", async () => (await timeline(orderId)).some(e => e.eventName === "stock.reserved"));
		await call("probe-producer.emit", { eventName: "payment.authorized", data: { orderId, paymentId: randomUUID(), method: "WALLET", amount: 2000, currency: "EUR" } });
		await eventually("stock.committed", async () => (await timeline(orderId)).some(e => e.eventName === "stock.committed"));
		expect(await levels(p.id)).toMatchObject({ onHand: 4, reserved: 0 });
		const names = (await timeline(orderId)).map(e => e.eventName);
		expect(names.filter(n => n === "stock.reserved")).toHaveLength(1);
		const reserved = (await timeline(orderId)).find(e => e.eventName === "stock.reserved");
		expect(reserved.data).toMatchObject({ orderId, items: [{ productId: p.id, quantity: 2 }], expiresAt: expect.any(String) });
	});

	it("answers order.created with stock.failed naming the short lines", async () => {
		const p = await product(1);
		const orderId = randomUUID();
		await call("probe-producer.emit", { eventName: "order.created", data: { orderId, userId: "u", items: [{ productId: p.id, quantity: 2 }] } });
		const failed = await eventually("stock.failed", async () => (await timeline(orderId)).find(e => e.eventName === "stock.failed"));
		expect(failed.data).toEqual({ orderId, reason: "OUT_OF_STOCK", lines: [{ productId: p.id, requested: 2, available: 1 }] });
	});

	it("releases on payment.failed", async () => {
		const p = await product(3);
		const orderId = randomUUID();
		await call("inventory.reserve", { orderId, items: [{ productId: p.id, quantity: 3 }] });
		await call("probe-producer.emit", { eventName: "payment.failed", data: { orderId, code: "INSUFFICIENT_FUNDS", reason: "no money" } });
		const released = await eventually("stock.released", async () => (await timeline(orderId)).find(e => e.eventName === "stock.released"));
		expect(released.data).toEqual({ orderId, reason: "PAYMENT_FAILED" });
		expect(await levels(p.id)).toMatchObject({ reserved: 0, available: 3 });
	});

	it("reserves and commits from the rows it wrote last, unread, and reads a row changed behind its back", async () => {
		const p = await product(10);
		const retries = () => (node.broker.metrics.getMetric("checkout_read_ahead_retries_total")?.get({ service: "inventory" })?.value as number | undefined) ?? 0;
		const sent = (name: string, data: Record<string, unknown>) => call("probe-producer.emit", { eventName: name, data });
		const published = (orderId: string, name: string) => eventually(name, async () => (await timeline(orderId)).some(e => e.eventName === name));
		const checkout = async () => {
			const orderId = randomUUID();
			await sent("order.created", { orderId, userId: "u", items: [{ productId: p.id, quantity: 1 }] });
			await published(orderId, "stock.reserved");
			await sent("payment.authorized", { orderId, paymentId: randomUUID(), method: "WALLET", amount: 1000, currency: "EUR" });
			await published(orderId, "stock.committed");
		};
		let seen = { reads: [] as string[], guards: 0 };
		const stop = watchStatements(sql => {
			const read = /^SELECT (?:ctid::text .* AS row_version_, \*|order_id, product_id, quantity) FROM "inventory"\."(\w+)"/.exec(sql);
			if (read) seen.reads.push(read[1]);
			if (sql.includes(`"inventory".unchanged_since_read`)) seen.guards++;
		});
		const watched = async (step: () => Promise<unknown>) => {
			seen = { reads: [], guards: 0 };
			await step();
			return seen;
		};
		try {
			const before = retries();
			// A new order has no reservation to read; the product's row is read once (this node never wrote it).
			expect((await watched(checkout)).reads).toEqual(["products"]);
			// Then nothing is read ahead, and each of the four reads' guards still runs.
			expect(await watched(checkout)).toEqual({ reads: [], guards: 4 });
			expect(retries()).toBe(before);
			// Changed behind its back (another node, an operator): the guard fails once, and the step reads.
			const { sequelize } = await runtimeOf(node.broker).database();
			await sequelize.query(`UPDATE inventory.products SET description = 'Changed elsewhere' WHERE id = :id`, { replacements: { id: p.id } });
			expect((await watched(checkout)).reads).toEqual(["reservations", "products"]);
			expect(retries()).toBe(before + 1);
			// An order.created that comes after its reservation (a redelivery): the assumption fails its guard, and nothing is reserved twice.
			const orderId = randomUUID();
			expect(await call("inventory.reserve", { orderId, items: [{ productId: p.id, quantity: 1 }] })).toMatchObject({ ok: true });
			await sent("order.created", { orderId, userId: "u", items: [{ productId: p.id, quantity: 1 }] });
			await eventually("the redelivery's retry", async () => retries() === before + 2);
		} finally {
			stop();
		}
		expect(await levels(p.id)).toMatchObject({ onHand: 7, reserved: 1 });
	});
});

describe("a batch of both steps", () => {
	it("reserves and commits in one transaction of one message, deciding the commits from the levels its reservations left", async () => {
		const p = await product(40);
		const paid = Array.from({ length: 8 }, () => randomUUID());
		for (const orderId of paid) await call("inventory.reserve", { orderId, items: [{ productId: p.id, quantity: 1 }] });
		const fresh = Array.from({ length: 8 }, () => randomUUID());
		const messages: string[][] = [];
		const stop = watchStatements((sql, opens) => {
			if (opens) messages.push([]);
			messages.at(-1)?.push(sql);
		});
		try {
			// Sent at once, they queue behind the first batch and are taken together.
			await Promise.all([
				...fresh.map(orderId => call("probe-producer.emit", { eventName: "order.created", data: { orderId, userId: "u", items: [{ productId: p.id, quantity: 1 }] } })),
				...paid.map(orderId => call("probe-producer.emit", { eventName: "payment.authorized", data: { orderId, paymentId: randomUUID(), method: "WALLET", amount: 1000, currency: "EUR" } })),
			]);
			await eventually("every step taken", async () => (await levels(p.id)).onHand === 32 && (await levels(p.id)).reserved === 8);
		} finally {
			stop();
		}
		const both = messages.filter(m => m.some(sql => sql.startsWith(`INSERT INTO "inventory"."reservations"`)) && m.some(sql => sql.startsWith(`UPDATE "inventory"."reservations" SET status`)));
		expect(both.length).toBeGreaterThan(0);
		// No product read inside a transaction: the later run takes the rows the earlier one left.
		expect(messages.filter(m => m.some(sql => /^SELECT \* FROM "inventory"\."products" .*FOR UPDATE/.test(sql)))).toEqual([]);
	});
});

describe("stock conservation", () => {
	it("holds for every product: initial + restocks = onHand + units committed and not returned", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		const rows = await sequelize.query<{ id: string; on_hand: number; moved: string }>(
			`SELECT p.id, p.on_hand, COALESCE(SUM(m.quantity), 0) AS moved FROM inventory.products p LEFT JOIN inventory.stock_movements m ON m.product_id = p.id GROUP BY p.id, p.on_hand`,
			{ type: QueryTypes.SELECT },
		);
		expect(rows.length).toBeGreaterThan(20);
		expect(rows.filter(r => Number(r.moved) !== r.on_hand)).toEqual([]);
	});
});

describe("reservation expiry", () => {
	let short: TestNode;
	const shortData = tempDir();
	beforeAll(async () => {
		short = await startTestNode({ DATA_DIR: shortData.dir, SERVICES: "inventory,audit", RESERVATION_TTL_MS: "1000" });
	});
	afterAll(async () => {
		await short?.stop();
		shortData.remove();
	});
	const scall = <T = any>(action: string, params: Record<string, any> = {}) => short.broker.call<T, Record<string, any>>(action, params);

	it("releases an unpaid reservation when it expires, with reason EXPIRED", async () => {
		const p = await scall("inventory.create", { sku: "EXP-1", name: "Expiring", category: "x", price: 100, stock: 2 });
		const orderId = randomUUID();
		await scall("inventory.reserve", { orderId, items: [{ productId: p.id, quantity: 2 }] });
		const released = await eventually("the expiry", async () => (await scall<any[]>("audit.timeline", { orderId })).find(e => e.eventName === "stock.released"), 10000);
		expect(released.data).toEqual({ orderId, reason: "EXPIRED" });
		expect((await scall("inventory.get", { id: p.id })).available).toBe(2);
		expect(await scall("inventory.reservation", { orderId })).toMatchObject({ status: "RELEASED", releaseReason: "EXPIRED" });
	});

	it("refuses to commit a reservation that expired before the payment arrived", async () => {
		const p = await scall("inventory.create", { sku: "EXP-2", name: "Late", category: "x", price: 100, stock: 1 });
		const orderId = randomUUID();
		await scall("inventory.reserve", { orderId, items: [{ productId: p.id, quantity: 1 }] });
		await new Promise(r => setTimeout(r, 1100));
		expect(await scall("inventory.commit", { orderId })).toEqual({ ok: false, reason: "RESERVATION_GONE" });
		expect((await scall("inventory.get", { id: p.id })).available).toBe(1);
	});
});
