/**
 * Horizontal scaling under load: while checkouts run through the gateway, a second inventory node
 * joins and takes a share of the work (its own metrics show it), then the first one is stopped
 * with SIGTERM; no request it had accepted fails, and every accepted order is confirmed.
 */
import { randomUUID } from "node:crypto";
import { eventually, freePort } from "../../scripts/harness/node";
import { spawnNode, startCluster, waitForActionsOn, waitForService, type NodeProcess, type TestCluster } from "../../scripts/harness/cluster";
import { http, tokenFor } from "../../scripts/harness/http";

const ADDRESS = { name: "S", line1: "L", city: "C", postalCode: "P", country: "DE" };
let cluster: TestCluster;
let gateway: string;
let second: NodeProcess | undefined;

beforeAll(async () => {
	const port = await freePort();
	gateway = `http://127.0.0.1:${port}`;
	cluster = await startCluster(
		[
			{ name: "s-gateway", env: { SERVICES: "gateway", PORT: String(port) } },
			{ name: "s-core", env: { SERVICES: "order,validation,payment,wallet,voucher,notification,audit" } },
			{ name: "s-inventory-1", env: { SERVICES: "inventory" } },
		],
		{ RATE_LIMIT: "100000", SHUTDOWN_DRAIN_MS: "500" },
	);
	await waitForActionsOn(cluster.client, "s-gateway", ["order.create", "inventory.create"]);
}, 120000);

afterAll(async () => {
	await second?.stop("SIGKILL");
	await cluster?.stop();
});

it("keeps every accepted checkout while inventory scales out and a node leaves", async () => {
	const product = await cluster.call("inventory.create", { sku: "SCALE-1", name: "Plenty", category: "x", price: 100, stock: 100000 });
	const buyers = Array.from({ length: 6 }, (_, i) => `scaler-${i}`);
	await Promise.all(buyers.map(u => cluster.call("wallet.credit", { userId: u, amount: 1_000_000, reason: "TOP_UP", idempotencyKey: randomUUID() })));

	const statuses: number[] = [];
	const accepted: string[] = [];
	let running = true;
	const load = Promise.all(
		buyers.map(async userId => {
			const token = tokenFor(userId);
			while (running) {
				const res = await http(gateway, "POST", "/api/orders", {
					token,
					body: { items: [{ productId: product.id, quantity: 1 }], shippingAddress: ADDRESS, payment: { method: "WALLET" } },
				});
				statuses.push(res.status);
				if (res.status === 201) accepted.push(res.body.id);
			}
		}),
	);

	await new Promise(r => setTimeout(r, 2000));
	// Scale out: a second inventory node joins under load.
	second = await spawnNode("s-inventory-2", { ...cluster.env, SERVICES: "inventory" });
	await waitForService(cluster.client, "inventory", 2);
	const reservedBy = async (nodeID: string) => {
		const metrics = await cluster.client.call<Array<{ name: string; values: Array<{ value: number }> }>, Record<string, unknown>>("$node.metrics", { includes: ["checkout_stock_reservations_total"] }, { nodeID });
		return metrics.flatMap(m => m.values).reduce((sum, v) => sum + v.value, 0);
	};
	await eventually("the new node to reserve stock too", async () => (await reservedBy("s-inventory-2")) > 0, 40000, 500);

	// Scale in: the first inventory node stops gracefully while checkouts go on.
	const first = cluster.nodes.find(n => n.name === "s-inventory-1")!;
	expect(await first.stop("SIGTERM")).toBe(0);
	await new Promise(r => setTimeout(r, 3000));
	running = false;
	await load;

	expect(statuses.length).toBeGreaterThan(30);
	expect(statuses.filter(s => s !== 201)).toEqual([]);
	const finals = await eventually(
		"every accepted order to be confirmed",
		async () => {
			// In batches: hundreds of simultaneous calls would overflow the bulkhead (50 + 500 queued) by design.
			const orders: any[] = [];
			for (let i = 0; i < accepted.length; i += 50) {
				orders.push(...(await Promise.all(accepted.slice(i, i + 50).map(orderId => cluster.call("order.get", { orderId })))));
			}
			return orders.every(o => ["CONFIRMED", "FAILED", "PAYMENT_FAILED", "CANCELLED"].includes(o.status)) && orders;
		},
		90000,
		1000,
	);
	expect(finals.filter(o => o.status !== "CONFIRMED").map(o => [o.id, o.status, o.failureCode])).toEqual([]);
	const level = (await cluster.call("inventory.levels", { pageSize: 100 })).rows.find((l: any) => l.productId === product.id);
	expect(level).toMatchObject({ onHand: 100000 - accepted.length, reserved: 0 });
});
