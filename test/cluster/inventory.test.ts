/**
 * No oversell across nodes: 200 concurrent orders for one product with stock 50, balanced over two
 * inventory nodes that share PostgreSQL and lock through Redis (Redlock); and their cached reads.
 */
import { randomUUID } from "node:crypto";
import { Client } from "pg";
import Redis from "ioredis";
import { startCluster, type TestCluster } from "../../scripts/harness/cluster";
import { eventually } from "../../scripts/harness/node";

let cluster: TestCluster;
const call = <T = any>(action: string, params: Record<string, any> = {}) => cluster.call<T>(action, params);

beforeAll(async () => {
	cluster = await startCluster([
		{ name: "inventory-1", env: { SERVICES: "inventory" } },
		{ name: "inventory-2", env: { SERVICES: "inventory" } },
	]);
});
afterAll(() => cluster?.stop());

it("reserves and commits exactly the stock there is, never below zero", async () => {
	const hot = await call("inventory.create", { sku: "HOT-1", name: "Hot product", category: "x", price: 999, stock: 50 });
	const other = await call("inventory.create", { sku: "HOT-2", name: "Companion", category: "x", price: 100, stock: 1000 });
	// Half the orders also take the companion product, in the opposite line order.
	const orders = Array.from({ length: 200 }, (_, i) => ({
		orderId: randomUUID(),
		items: i % 2 ? [{ productId: hot.id, quantity: 1 }, { productId: other.id, quantity: 1 }] : [{ productId: hot.id, quantity: 1 }],
	}));
	const results = await Promise.all(orders.map(o => call("inventory.reserve", o).then(r => ({ ...r, order: o }))));
	const reserved = results.filter(r => r.ok);
	expect(reserved).toHaveLength(50);
	expect(results.filter(r => !r.ok).every(r => r.reason === "OUT_OF_STOCK")).toBe(true);

	await Promise.all(reserved.map(r => call("inventory.commit", { orderId: r.order.orderId })));
	const levels = (await call("inventory.levels", { pageSize: 100 })).rows;
	expect(levels.find((l: any) => l.productId === hot.id)).toMatchObject({ onHand: 0, reserved: 0, available: 0 });
	const companionSold = reserved.filter(r => r.order.items.length === 2).length;
	expect(levels.find((l: any) => l.productId === other.id)).toMatchObject({ onHand: 1000 - companionSold, reserved: 0 });

	// Conservation straight from the tables: initial + restocks + (−committed) = onHand, for every product.
	const pg = new Client({ connectionString: cluster.databaseUrl });
	await pg.connect();
	try {
		const { rows } = await pg.query(
			"SELECT p.id, p.on_hand, p.reserved, COALESCE(SUM(m.quantity), 0)::int AS moved FROM inventory.products p LEFT JOIN inventory.stock_movements m ON m.product_id = p.id GROUP BY p.id",
		);
		for (const r of rows) {
			expect(r.on_hand).toBeGreaterThanOrEqual(0);
			expect(r.reserved).toBeGreaterThanOrEqual(0);
			expect(r.moved).toBe(r.on_hand);
		}
	} finally {
		await pg.end();
	}
});

it("keeps each node's cached reads fresh across nodes without scanning Redis for them", async () => {
	const p = await call("inventory.create", { sku: "CACHED-1", name: "Cached", category: "x", price: 100, stock: 5 });
	const onEach = <T = any>(action: string, params: Record<string, any>) => Promise.all(["inventory-1", "inventory-2"].map(nodeID => cluster.client.call<T, Record<string, any>>(action, params, { nodeID })));
	const read = async () => [...(await onEach("inventory.get", { id: p.id })).map(r => r.available), ...(await onEach<any[]>("inventory.availability", { productIds: [p.id] })).map(r => r[0].available)];
	expect(await read()).toEqual([5, 5, 5, 5]); // now cached on both nodes
	const redis = new Redis(cluster.env.REDIS_URL);
	const scans = async () => Number((await redis.info("commandstats")).match(/cmdstat_scan:calls=(\d+)/)?.[1] ?? 0);
	try {
		const before = await scans();
		await cluster.client.call("inventory.restock", { productId: p.id, quantity: 2 }, { nodeID: "inventory-1" });
		// The node that changed it reads fresh at once; the other once it heard (a broadcast).
		expect((await cluster.client.call<any, Record<string, any>>("inventory.get", { id: p.id }, { nodeID: "inventory-1" })).available).toBe(7);
		await eventually("both nodes to read the new level", async () => (await read()).every(a => a === 7), 5000, 50);
		expect(await scans()).toBe(before);
	} finally {
		redis.disconnect();
	}
});

it("drops every cached read when a node of an earlier version hints at a change without naming products", async () => {
	const p = await call("inventory.create", { sku: "CACHED-2", name: "Cached", category: "x", price: 100, stock: 5 });
	const onEach = () => Promise.all(["inventory-1", "inventory-2"].map(nodeID => cluster.client.call<any, Record<string, any>>("inventory.get", { id: p.id }, { nodeID })));
	expect((await onEach()).map(r => r.available)).toEqual([5, 5]); // now cached on both nodes
	// What a node of the earlier version does: commit a change, then broadcast the hint alone.
	const pg = new Client({ connectionString: cluster.env.DATABASE_URL });
	await pg.connect();
	try {
		await pg.query("UPDATE inventory.products SET on_hand = 9 WHERE id = $1", [p.id]);
	} finally {
		await pg.end();
	}
	expect((await onEach()).map(r => r.available)).toEqual([5, 5]); // still the cached entries
	await cluster.client.broadcast("inventory.cache.invalidated");
	// Well inside the entries' 5 s TTL: fresh because of the hint, not because they expired.
	await eventually("both nodes to read the new level", async () => (await onEach()).every(r => r.available === 9), 2000, 50);
});

it("shows a new category on every node at once, though each node cached the list before", async () => {
	const categoriesOn = (nodeID: string) => cluster.client.call<{ rows: Array<{ name: string; products: number }> }, Record<string, any>>("inventory.categories", { pageSize: 100 }, { nodeID });
	const nodes = ["inventory-1", "inventory-2"];
	const category = `new-${randomUUID().slice(0, 8)}`;
	for (const nodeID of nodes) expect((await categoriesOn(nodeID)).rows.map(c => c.name)).not.toContain(category); // now cached on both
	await cluster.client.call("inventory.create", { sku: `CAT-${randomUUID().slice(0, 8)}`, name: "New", category, price: 100, stock: 1 }, { nodeID: "inventory-1" });
	// Well inside the entries' 5 s TTL: renewed by the change's broadcast, not by their expiry.
	await eventually(
		"both nodes to list the new category",
		async () => (await Promise.all(nodes.map(categoriesOn))).every(page => page.rows.some(c => c.name === category && c.products === 1)),
		2000,
		50,
	);
});
