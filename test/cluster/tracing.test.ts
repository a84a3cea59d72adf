/**
 * One trace per checkout: gateway, validation, order, inventory, payment, wallet and the event
 * consumers, on four nodes, report spans (event exporter) that form one tree whose trace ID is the
 * X-Request-ID the client sent.
 */
import { randomUUID } from "node:crypto";
import type { ServiceBroker, ServiceSchema } from "moleculer";
import { loadConfig } from "../../lib/config";
import { createNode } from "../../lib/node";
import { eventually, freePort } from "../../scripts/harness/node";
import { startCluster, waitForActionsOn, waitForService, type TestCluster } from "../../scripts/harness/cluster";
import { http, tokenFor } from "../../scripts/harness/http";

interface SpanRecord {
	id: string;
	traceID: string;
	parentID: string | null;
	name: string;
	service?: { name: string };
	tags?: Record<string, unknown>;
}

const spans: SpanRecord[] = [];
const Collector: ServiceSchema = {
	name: "span-collector",
	events: {
		"$tracing.spans"(ctx: { params: SpanRecord[] }) {
			spans.push(...ctx.params);
		},
	},
};

let cluster: TestCluster;
let collector: ServiceBroker;
let gateway: string;

beforeAll(async () => {
	const port = await freePort();
	gateway = `http://127.0.0.1:${port}`;
	cluster = await startCluster(
		[
			{ name: "t-gateway", env: { SERVICES: "gateway", PORT: String(port) } },
			{ name: "t-order", env: { SERVICES: "order,validation,inventory" } },
			{ name: "t-payment", env: { SERVICES: "payment,wallet" } },
			{ name: "t-support", env: { SERVICES: "voucher,notification,audit" } },
		],
		{ TRACING_EXPORTER: "event" },
	);
	collector = createNode({ ...loadConfig({ ...cluster.env, SERVICES: "none" }), nodeID: "t-collector" }, [Collector]);
	await collector.start();
	await waitForService(cluster.client, "span-collector");
	await waitForActionsOn(cluster.client, "t-gateway", ["order.create", "wallet.get", "inventory.create"]);
}, 120000);

afterAll(async () => {
	await collector?.stop();
	await cluster?.stop();
});

it("collects the spans of one checkout as one tree under the client's request ID", async () => {
	const admin = tokenFor("ops", "admin");
	const product = await http(gateway, "POST", "/api/products", { token: admin, body: { sku: "TRC-1", name: "Traced", category: "x", price: 700, stock: 5 } });
	expect(product.status).toBe(201);
	await cluster.call("wallet.credit", { userId: "tracy", amount: 700, reason: "TOP_UP", idempotencyKey: randomUUID() });

	const requestID = `checkout-${randomUUID()}`;
	const created = await http(gateway, "POST", "/api/orders", {
		token: tokenFor("tracy"),
		headers: { "X-Request-ID": requestID },
		body: { items: [{ productId: product.body.id, quantity: 1 }], shippingAddress: { name: "T", line1: "L", city: "C", postalCode: "P", country: "DE" }, payment: { method: "WALLET" } },
	});
	expect(created.status).toBe(201);
	expect(created.headers.get("x-request-id")).toBe(requestID);
	await eventually("CONFIRMED", async () => (await cluster.call("order.get", { orderId: created.body.id })).status === "CONFIRMED");

	await eventually("the spans of every service", async () => {
		const mine = spans.filter(s => s.traceID === requestID);
		const services = new Set(mine.map(s => s.service?.name));
		return ["gateway", "validation", "order", "inventory", "payment", "wallet", "audit"].every(n => services.has(n));
	}, 30000, 500);
	await new Promise(r => setTimeout(r, 2500)); // the last batches
	const all = spans.filter(s => s.traceID === requestID);
	const ids = new Set(all.map(s => s.id));
	expect(ids.size).toBe(all.length);
	const roots = all.filter(s => !s.parentID || !ids.has(s.parentID));
	expect(roots.map(r => r.name)).toEqual(["POST /api/orders"]); // the gateway's request, and nothing else
	const nodes = new Set(all.map(s => (s.tags as any)?.nodeID ?? (s as any).service?.nodeID).filter(Boolean));
	expect(nodes.size).toBeGreaterThanOrEqual(3);
	expect(all.length).toBeGreaterThan(10); // the whole tree, once its last batches reported
	// The event handlers hang under the spans that wrote their events.
	const handler = all.find(s => s.name.includes("'stock.reserved'"));
	expect(handler).toBeDefined();
	expect(ids.has(handler!.parentID!)).toBe(true);
});
