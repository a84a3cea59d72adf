/**
 * `npm run cluster` as the README and the benchmark use it: four node processes that serve a
 * checkout through the gateway, announced by one `cluster ready` line, and gone on Ctrl-C with
 * their database and topics.
 */
import { spawn } from "node:child_process";
import { Client } from "pg";
import { ROOT, SERVERS, topicsOf } from "../../scripts/harness/cluster";
import { http, readEvents, tokenFor } from "../../scripts/harness/http";
import { eventually, freePort } from "../../scripts/harness/node";

const databases = async () => {
	const pg = new Client({ connectionString: SERVERS.DATABASE_URL });
	await pg.connect();
	try {
		return (await pg.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE 'checkout_t_%'")).rows.map(r => r.datname);
	} finally {
		await pg.end();
	}
};

it("starts, confirms a checkout through its gateway, and stops on SIGINT, dropping its database and its topics", async () => {
	const before = await databases();
	const port = await freePort();
	const child = spawn(process.execPath, ["--import", "tsx", "scripts/cluster.ts"], { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: "", CLUSTER_PORT: String(port) }, stdio: ["ignore", "pipe", "pipe"] });
	let out = "";
	child.stdout!.on("data", d => (out += d));
	child.stderr!.on("data", d => (out += d));
	const exited = new Promise<number | null>(resolve => child.on("exit", resolve));
	let pids: number[] = [];
	try {
		const ready = JSON.parse((await eventually("cluster ready", async () => /cluster ready (\{.*\})/.exec(out)?.[1], 120000, 250)) as string);
		pids = ready.nodes.map((n: { pid: number }) => n.pid);
		expect(ready.url).toBe(`http://127.0.0.1:${port}`);
		expect(ready.databaseUrl).toMatch(/^postgres:\/\/.*\/checkout_t_/);
		// It starts with the demo catalogue, like the embedded default.
		expect(ready.seededProducts).toBeGreaterThanOrEqual(20);
		expect((await http(ready.url, "GET", "/api/products?pageSize=100")).body.total).toBe(ready.seededProducts);
		expect(ready.nodes.map((n: { services: string }) => n.services)).toEqual(["gateway", "order,validation,voucher", "inventory,payment,wallet", "notification,audit"]);
		const ours = (await databases()).filter(d => !before.includes(d));
		expect(ours).toHaveLength(1);

		const admin = tokenFor("lc-admin", "admin");
		const product = await http(ready.url, "POST", "/api/products", { token: admin, body: { sku: "LC-1", name: "Local", category: "c", price: 700, stock: 3 } });
		expect(product.status).toBe(201);
		const token = tokenFor("lc-user");
		const order = await http(ready.url, "POST", "/api/orders", {
			token,
			body: { items: [{ productId: product.body.id, quantity: 1 }], shippingAddress: { name: "L", line1: "1", city: "C", postalCode: "P", country: "DE" }, payment: { method: "CARD", cardToken: "tok_visa" } },
		});
		expect(order.status).toBe(201);
		const seen = await readEvents(`${ready.url}/api/orders/${order.body.id}/stream`, token, events => events.some(e => e.data.status === "CONFIRMED"), 30000);
		expect(seen.events.map(e => e.data.status)).toContain("CONFIRMED");
		expect(ready.topicPrefix).toMatch(/^t[0-9a-f]{6}\.$/);
		expect(await topicsOf(ready.topicPrefix)).toContain(`${ready.topicPrefix}order.confirmed`);

		child.kill("SIGINT");
		expect(await exited).toBe(0);
		expect(await databases()).not.toContain(ours[0]);
		expect(await topicsOf(ready.topicPrefix)).toEqual([]);
		for (const n of ready.nodes) expect(() => process.kill(n.pid, 0)).toThrow(); // every node is gone
	} finally {
		// A failed run must not leave its nodes behind to join the next test's consumer groups.
		if (child.exitCode === null) child.kill("SIGKILL");
		for (const pid of pids) {
			try {
				process.kill(pid, "SIGKILL");
			} catch {
				// already gone
			}
		}
	}
});
