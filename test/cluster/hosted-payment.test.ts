/**
 * Hosted card payments across nodes (issue 13): the gateway's webhook arrives while the node that
 * runs the order service is down (recorded by the payment node, applied when the order node is
 * back), and while the payment node is down (not acknowledged, so the gateway sends it again until
 * the payment node is back). Either way the order is confirmed, charged once, paid once.
 */
import { randomUUID } from "node:crypto";
import { startMockGateway, type MockGateway } from "../../lib/mock-gateway";
import { DEV_WEBHOOK_SECRET } from "../../lib/config";
import { eventually, freePort } from "../../scripts/harness/node";
import { http, tokenFor } from "../../scripts/harness/http";
import { spawnNode, startCluster, waitForServicesOn, type TestCluster } from "../../scripts/harness/cluster";

const SHOP = "https://shop.example.com";
const ADDRESS = { name: "N", line1: "L", city: "C", postalCode: "P", country: "DE" };
const erin = tokenFor("erin");
const NODES = [
	{ name: "edge", env: { SERVICES: "gateway" } },
	{ name: "pay", env: { SERVICES: "payment,audit" } },
	{ name: "core", env: { SERVICES: "order,validation,inventory,wallet,voucher,notification" } },
];
let cluster: TestCluster;
let mock: MockGateway;
let base: string;
let productId: string;

const api = (method: string, path: string, body?: unknown) => http(base, method, path, { token: erin, body });
const orderOf = async (id: string) => (await api("GET", `/api/orders/${id}`)).body;

/** Kills a node (SIGKILL: no goodbye) and returns a function that starts it again as it was. */
async function kill(name: string): Promise<() => Promise<void>> {
	const i = cluster.nodes.findIndex(n => n.name === name);
	await cluster.nodes[i].stop("SIGKILL");
	return async () => {
		cluster.nodes[i] = await spawnNode(name, { ...cluster.env, ...NODES.find(n => n.name === name)!.env });
	};
}

/** An order waiting for payment, its session open, paid on the gateway's page; the webhook is then on its way. */
async function sessionFor(): Promise<{ orderId: string; session: { id: string; url: string } }> {
	const placed = await api("POST", "/api/orders", { items: [{ productId, quantity: 1 }], shippingAddress: ADDRESS });
	expect(placed.status).toBe(201);
	await eventually("PAYMENT_PENDING", async () => (await orderOf(placed.body.id)).status === "PAYMENT_PENDING", 60000, 250);
	const session = await api("POST", `/api/orders/${placed.body.id}/payment-session`, { successUrl: `${SHOP}/paid/{SESSION_ID}`, cancelUrl: `${SHOP}/cart` });
	expect(session.status).toBe(201);
	return { orderId: placed.body.id, session: session.body };
}
const pay = async (url: string) => {
	const res = await fetch(`${url}/pay`, { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: "card=tok_visa", redirect: "manual" });
	expect(res.status).toBe(303);
};
const confirmed = (orderId: string) => eventually(`order ${orderId} CONFIRMED`, async () => (await orderOf(orderId)).status === "CONFIRMED", 90000, 500);

beforeAll(async () => {
	mock = await startMockGateway({ webhookRetryBaseMs: 250 });
	const port = await freePort();
	NODES[0].env = { ...NODES[0].env, PORT: String(port) } as typeof NODES[0]["env"];
	cluster = await startCluster(NODES, { PAYMENT_GATEWAY_URL: mock.url, PAYMENT_REDIRECT_ORIGINS: SHOP, SAGA_STEP_TIMEOUT_MS: "20000", RATE_LIMIT: "100000" });
	base = `http://127.0.0.1:${port}`;
	await waitForServicesOn(cluster.client, "edge", ["order", "validation", "inventory", "payment", "wallet", "audit"]);
	mock.configureWebhooks(`${base}/api/webhooks/payment-gateway`, DEV_WEBHOOK_SECRET);
	const product = await cluster.call("inventory.create", { sku: `HP-${randomUUID().slice(0, 6)}`, name: "Hosted", category: "x", price: 2500, stock: 100 });
	productId = product.id;
}, 180000);

afterAll(async () => {
	await cluster?.stop();
	await mock?.close();
});

it("records a webhook that arrives while the order node is down, and confirms the order once it is back", async () => {
	const { orderId, session } = await sessionFor();
	const restart = await kill("core");
	await pay(session.url);
	// The payment node answers it: recorded with its payment.authorized in the outbox.
	await eventually("the webhook delivered", async () => mock.webhooks().find(w => w.event.data.object.id === session.id)?.status === "delivered", 30000, 100);
	await restart();
	await confirmed(orderId);
	const timeline = (await api("GET", `/api/orders/${orderId}/timeline`)).body as Array<{ eventName: string }>;
	expect(timeline.filter(e => e.eventName === "payment.authorized")).toHaveLength(1);
	expect(mock.charges().filter(c => c.sessionId === session.id)).toHaveLength(1);
});

it("is sent again while the payment node is down (no 2xx answer), and applied once when it is back", async () => {
	const { orderId, session } = await sessionFor();
	const restart = await kill("pay");
	await pay(session.url);
	const delivery = await eventually("a refused delivery", async () => mock.webhooks().find(w => w.event.data.object.id === session.id && w.attempts >= 2), 30000, 100);
	// Unanswered (the gateway's call waits for the dead node) or 503 once it is known gone: never 2xx.
	expect(delivery.status).toBe("pending");
	expect(delivery.lastStatus === undefined || delivery.lastStatus >= 500).toBe(true);
	await restart();
	await eventually("the webhook delivered", async () => delivery.status === "delivered", 60000, 250);
	await confirmed(orderId);
	const timeline = (await api("GET", `/api/orders/${orderId}/timeline`)).body as Array<{ eventName: string }>;
	expect(timeline.filter(e => e.eventName === "payment.authorized")).toHaveLength(1);
	expect(mock.charges().filter(c => c.sessionId === session.id)).toHaveLength(1);
});
