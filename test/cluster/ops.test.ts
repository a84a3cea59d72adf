/**
 * The operators' REPL (`npm run repl`) joined to a running cluster, driven through its stdin like
 * a person at the keyboard: each command answers with the cluster's real data.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { eventually } from "../../scripts/harness/node";
import { ROOT, startCluster, type TestCluster } from "../../scripts/harness/cluster";
import { shortId } from "../../lib/ids";

const ADDRESS = { name: "N", line1: "L", city: "C", postalCode: "P", country: "DE" };
let cluster: TestCluster;
let repl: ChildProcess;
let output = "";

/** Types a command and waits until what it printed matches. */
async function type(command: string, expected: RegExp, timeoutMs = 20000): Promise<string> {
	const from = output.length;
	repl.stdin!.write(`${command}\n`);
	return eventually(`"${command}" to print ${expected}`, async () => {
		const printed = output.slice(from);
		return expected.test(printed) && printed;
	}, timeoutMs);
}

beforeAll(async () => {
	cluster = await startCluster([
		{ name: "shop-a", env: { SERVICES: "order,validation,inventory,payment,wallet" } },
		{ name: "shop-b", env: { SERVICES: "voucher,notification,audit" } },
	]);
	repl = spawn(process.execPath, ["--import", "tsx", "bin/repl.ts"], {
		cwd: ROOT,
		env: { ...process.env, NODE_OPTIONS: "", ...cluster.env, NODE_ID: "operator", LOG_LEVEL: "warn" },
		stdio: ["pipe", "pipe", "pipe"],
	});
	repl.stdout!.on("data", d => (output += d));
	repl.stderr!.on("data", d => (output += d));
	await eventually("the REPL prompt", async () => output.includes("mol $"), 60000);
	await eventually("the REPL to see the services", async () => {
		const printed = await type("services", /inventory/, 5000).catch(() => "");
		return /audit/.test(printed) && /inventory/.test(printed);
	}, 30000, 500);
}, 120000);

afterAll(async () => {
	repl?.stdin?.end();
	repl?.kill("SIGKILL");
	await cluster?.stop();
});

it("shows an order with its history and its events from every producer", async () => {
	const product = await cluster.call("inventory.create", { sku: "OPS-1", name: "Ops thing", category: "x", price: 250, stock: 5 });
	await cluster.call("wallet.credit", { userId: "opal", amount: 250, reason: "TOP_UP", idempotencyKey: randomUUID() });
	const order = await cluster.call("order.create", { userId: "opal", items: [{ productId: product.id, quantity: 1 }], shippingAddress: ADDRESS, payment: { method: "WALLET" } });
	await eventually("CONFIRMED", async () => (await cluster.call("order.get", { orderId: order.id })).status === "CONFIRMED");
	await eventually("audited", async () => (await cluster.call<any[]>("audit.timeline", { orderId: order.id })).some(e => e.eventName === "order.confirmed"));
	const printed = await type(`order ${order.id}`, /events \(\d+\):[\s\S]*order\.confirmed/);
	expect(printed).toContain(`order ${order.id} of opal: CONFIRMED / payment AUTHORIZED, total 250 EUR`);
	expect(printed).toMatch(/1 x OPS-1 Ops thing @ 250 = 250/);
	expect(printed).toMatch(/CREATED[\s\S]*PAYMENT_PENDING[\s\S]*PAYMENT_SUCCESS[\s\S]*CONFIRMED/);
	expect(printed).toMatch(/order\.created from order@shop-a/);
	expect(printed).toMatch(/stock\.reserved from inventory@shop-a/);

	// The short id that notifications show (its last 8 characters) finds the same order.
	const short = await type(`order ${shortId(order.id)}`, /events \(\d+\):[\s\S]*order\.confirmed/);
	expect(short).toContain(`order ${order.id} of opal: CONFIRMED`);
	expect(await type("order ffffffff", /no order ends with ffffffff/)).toBeTruthy();

	const stock = await type("stock OPS-1", /latest movements:[\s\S]*COMMIT -1/);
	expect(stock).toContain("OPS-1 Ops thing: onHand 4, reserved 0, available 4");
});

it("lists dead letters and replays one, and shows backlogs, stuck orders and every node's health", async () => {
	await cluster.client.emit("order.created", { not: "an envelope" });
	const letters = await eventually("a dead letter", async () => {
		const printed = await type("deadletters inventory", /inventory: \d+ dead letter/);
		return /not a valid domain event/.test(printed) && printed;
	});
	expect(letters).toMatch(/#\d+ unknown \(not an event\) after 1 tries: not a valid domain event/);
	const id = /#(\d+)/.exec(letters)![1];
	expect(await type(`replay inventory ${id}`, /replay/)).toMatch(/NOT_REPLAYABLE/); // it was never a domain event

	expect(await type("backlog", /wallet: \d+ unpublished/)).toMatch(/order: \d+ unpublished[\s\S]*wallet: \d+ unpublished/);
	expect(await type("stuck", /stuck order|no stuck orders/)).toContain("no stuck orders");

	const health = await type("health", /shop-b: /);
	expect(health).toMatch(/shop-a: ok \[order,validation,inventory,payment,wallet\] database=ok transporter=ok redis=ok kafka=ok/);
	expect(health).toMatch(/shop-b: ok \[voucher,notification,audit\]/);
	expect(health).toMatch(/operator: ok \[no services\]/);
});
