/**
 * The real entry point (`npm start` = bin/node.ts) as a child process: it comes up on embedded
 * defaults, is ready only when it can serve, shuts down once on SIGTERM or SIGINT however it is
 * signalled (npm, its process group, a stalled client connected), keeps its data directory to
 * itself, keeps tokens out of its logs and traces, refuses bad settings with one clear line, stops
 * (exit 1) when its embedded database fails, and killed mid-work loses nothing.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Client } from "pg";
import { tempDir, eventually, freePort } from "../../scripts/harness/node";
import { http, tokenFor } from "../../scripts/harness/http";

const ROOT = path.resolve(__dirname, "../..");
const CLEAN_ENV = Object.fromEntries(
	Object.entries(process.env).filter(
		([k]) => !["TRANSPORTER", "DATABASE_URL", "REDIS_URL", "KAFKA_BROKERS", "SERVICES", "NODE_ENV", "JWT_SECRET", "NODE_OPTIONS"].includes(k),
	),
);

function startNode(env: Record<string, string>): { child: ChildProcess; output: () => string; exit: Promise<number | null> } {
	const child = spawn(process.execPath, ["--import", "tsx", "bin/node.ts"], {
		cwd: ROOT,
		env: { ...CLEAN_ENV, LOG_LEVEL: "warn", METRICS_PORT: "0", ...env },
		stdio: ["ignore", "pipe", "pipe"],
	});
	let output = "";
	child.stdout!.on("data", d => (output += d));
	child.stderr!.on("data", d => (output += d));
	const exit = new Promise<number | null>(resolve => child.on("exit", resolve));
	return { child, output: () => output, exit };
}

async function refusal(env: Record<string, string>): Promise<string> {
	const run = spawn(process.execPath, ["--import", "tsx", "bin/node.ts"], { cwd: ROOT, env: { ...CLEAN_ENV, ...env }, stdio: ["ignore", "pipe", "pipe"] });
	let stderr = "";
	run.stderr.on("data", d => (stderr += d));
	const code = await new Promise<number | null>(resolve => run.on("exit", resolve));
	expect(code).toBe(1);
	const lines = stderr.trim().split("\n");
	expect(lines).toHaveLength(1);
	return lines[0];
}

describe("npm start (bin/node.ts)", () => {
	it("starts on embedded defaults, answers /health/ready, and stops cleanly on SIGTERM", async () => {
		const data = tempDir();
		const port = await freePort();
		const node = startNode({ DATA_DIR: data.dir, PORT: String(port) });
		try {
			await eventually("the start-up banner", async () => node.output().includes("is up (embedded)"), 60000);
			expect(node.output()).toContain(`http://localhost:${port}/health/ready`);
			expect(node.output()).toContain("npm run token -- --sub alice --role customer");
			const ready = await fetch(`http://127.0.0.1:${port}/health/ready`);
			expect(ready.status).toBe(200);
			node.child.kill("SIGTERM");
			expect(await node.exit).toBe(0);
		} finally {
			node.child.kill("SIGKILL");
			data.remove();
		}
	});

	it.each([
		[{ TRANSPORTER: "bogus://x" }, /^checkout: configuration error: TRANSPORTER: must be a nats:\/\/ or tls:\/\/ URL, got "bogus:\/\/x"$/],
		[{ DATABASE_URL: "postgres://postgres@127.0.0.1:1/nowhere" }, /^checkout: configuration error: DATABASE_URL: cannot connect to 127\.0\.0\.1:1\/nowhere \(ECONNREFUSED/],
		[{ DATABASE_URL: "postgres://postgres@localhost/nowhere?host=/nonexistent" }, /^checkout: configuration error: DATABASE_URL: cannot connect to \/nonexistent\/nowhere \(ENOENT/],
		[{ REDIS_URL: "redis://127.0.0.1:1" }, /^checkout: configuration error: REDIS_URL: cannot connect to 127\.0\.0\.1:1 \(/],
		[{ SERVICES: "gateway", TRANSPORTER: "nats://127.0.0.1:1" }, /^checkout: configuration error: TRANSPORTER: cannot connect to 127\.0\.0\.1:1 \(ECONNREFUSED/],
		[{ KAFKA_BROKERS: "127.0.0.1:1" }, /^checkout: configuration error: KAFKA_BROKERS: cannot connect to 127\.0\.0\.1:1 \(ECONNREFUSED/],
		[{ NODE_ENV: "production" }, /^checkout: configuration error: JWT_SECRET: is required when NODE_ENV=production$/],
		[{ PORT: "not-a-port" }, /^checkout: configuration error: PORT: must be a whole number, got "not-a-port"$/],
	])("refuses %j with one line naming the variable", async (env, line) => {
		const data = tempDir();
		try {
			expect(await refusal({ DATA_DIR: data.dir, ...env })).toMatch(line);
		} finally {
			data.remove();
		}
	});

	it("turns ready only when it can serve: a write sent the instant readiness answers 200 succeeds", async () => {
		const data = tempDir();
		const port = await freePort();
		const node = startNode({ DATA_DIR: data.dir, PORT: String(port) });
		try {
			await eventually(
				"readiness",
				async () => (await fetch(`http://127.0.0.1:${port}/health/ready`).catch(() => undefined))?.status === 200,
				60000,
				5,
			);
			const res = await fetch(`http://127.0.0.1:${port}/api/products`, {
				method: "POST",
				headers: { Authorization: `Bearer ${tokenFor("ops", "admin")}`, "Content-Type": "application/json" },
				body: JSON.stringify({ sku: "READY-1", name: "First", category: "r", price: 100, stock: 1 }),
			});
			expect(res.status).toBe(201);
		} finally {
			node.child.kill("SIGKILL");
			await node.exit;
			data.remove();
		}
	});

	// Three messages PGlite cannot serve. COPY from the client makes it throw: its WASM PostgreSQL
	// ends, and the socket server would serve no one again (electric-sql/pglite#1046). A message of a
	// type PostgreSQL does not know makes it spin for ever instead: the node must refuse to pass it on.
	// A statement that does not end holds PGlite's thread: the node must notice from its own.
	const failures: Array<[string, (client: Client) => void, RegExp, Record<string, string>?]> = [
		["COPY from the client", client => void client.query("COPY inventory.products FROM STDIN").catch(() => undefined), /PGlite failed/],
		["a message of an unknown type", client => (client as unknown as { connection: { stream: net.Socket } }).connection.stream.write(Buffer.from([0x7a, 0, 0, 0, 4])), /unknown type 'z'/],
		// Hours of work (PGlite ignores statement_timeout).
		[
			"a message it works on past EMBEDDED_STUCK_MS",
			client => void client.query("SELECT count(*) FROM generate_series(1, 1000000000000)").catch(() => undefined),
			/PGlite has worked on one message for over 3000 ms \(EMBEDDED_STUCK_MS\)/,
			{ EMBEDDED_STUCK_MS: "3000" },
		],
	];
	it.each(failures)("stops with one fatal line when its embedded database fails (%s), instead of leaving every request to wait; restarted, it serves its data", async (_, fail, reason, extraEnv = {}) => {
		const data = tempDir();
		const port = await freePort();
		const base = `http://127.0.0.1:${port}`;
		const ready = async () => (await fetch(`${base}/health/ready`).catch(() => undefined))?.status === 200;
		const env = { DATA_DIR: data.dir, PORT: String(port), ...extraEnv };
		let node = startNode(env);
		let client: Client | undefined;
		try {
			await eventually("readiness", ready, 60000);
			const product = await http(base, "POST", "/api/products", { token: tokenFor("ops", "admin"), body: { sku: "FAIL-1", name: "Kept", category: "f", price: 100, stock: 5 } });
			expect(product.status).toBe(201);
			const socketDir = readdirSync(tmpdir()).find(name => name.startsWith(`checkout-pglite-${node.child.pid}-`));
			expect(socketDir).toBeDefined();
			client = new Client({ host: path.join(tmpdir(), socketDir!), port: 5432, user: "postgres", database: "postgres" });
			client.on("error", () => undefined);
			await client.connect();
			fail(client);
			// Bounded: without the fix the node lives on, its requests waiting for ever.
			expect(await Promise.race([node.exit, new Promise(resolve => setTimeout(resolve, 30000, "still running"))])).toBe(1);
			expect(node.output()).toMatch(/FATAL.*The embedded database failed; the node stops, to be restarted on its files/s);
			expect(node.output()).toMatch(reason);

			node = startNode(env);
			await eventually("readiness after the restart", ready, 60000);
			const again = await http(base, "GET", `/api/products/${product.body.id}`, {});
			expect(again.status).toBe(200);
			expect(again.body).toMatchObject({ sku: "FAIL-1", available: 5 });
		} finally {
			client?.end().catch(() => undefined);
			node.child.kill("SIGKILL");
			await node.exit;
			data.remove();
		}
	});

	it("killed (SIGKILL) while it works off checkouts, loses nothing: restarted on its data, every accepted order ends CONFIRMED with its whole timeline and its customer's notification, debited once", async () => {
		const data = tempDir();
		const port = await freePort();
		const base = `http://127.0.0.1:${port}`;
		const ready = async () => (await fetch(`${base}/health/ready`).catch(() => undefined))?.status === 200;
		// A step whose call dies with the node (a payment in flight) is the watchdog's to re-drive once overdue: soon, here.
		const env = { DATA_DIR: data.dir, PORT: String(port), SAGA_STEP_TIMEOUT_MS: "2000" };
		let node = startNode(env);
		try {
			await eventually("readiness", ready, 60000);
			const admin = tokenFor("ops", "admin");
			const product = await http(base, "POST", "/api/products", { token: admin, body: { sku: "KILL-1", name: "Kept", category: "k", price: 100, stock: 1000 } });
			expect(product.status).toBe(201);
			const users = ["kill-a", "kill-b", "kill-c", "kill-d"];
			for (const u of users) {
				const topUp = await http(base, "POST", "/api/wallet/top-ups", { token: tokenFor(u), body: { amount: 100_000, cardToken: "tok_visa" }, headers: { "Idempotency-Key": `seed-${u}` } });
				expect(topUp.status).toBe(200);
			}
			const address = { name: "K", line1: "L", city: "C", postalCode: "P", country: "DE" };
			const placed = await Promise.all(
				Array.from({ length: 40 }, (_, i) => users[i % users.length]).map(async user => {
					const res = await http(base, "POST", "/api/orders", { token: tokenFor(user), body: { items: [{ productId: product.body.id, quantity: 1 }], shippingAddress: address, payment: { method: "WALLET" } } });
					return { user, status: res.status, id: res.body.id as string };
				}),
			);
			// Killed at once: the orders' events are being handed over and handled.
			node.child.kill("SIGKILL");
			await node.exit;
			const accepted = placed.filter(o => o.status === 201);
			expect(accepted).toHaveLength(40);

			node = startNode(env);
			await eventually("readiness after the restart", ready, 60000);
			for (const { user, id } of accepted) {
				const token = tokenFor(user);
				await eventually(`order ${id} confirmed`, async () => (await http(base, "GET", `/api/orders/${id}`, { token })).body.status === "CONFIRMED");
				// The audit log hears of an order only through its events: a lost event leaves a gap here.
				await eventually(`order ${id}'s whole timeline`, async () => {
					const names = ((await http(base, "GET", `/api/orders/${id}/timeline`, { token })).body as Array<{ eventName: string }>).map(e => e.eventName);
					return ["order.created", "stock.reserved", "payment.authorized", "stock.committed", "order.confirmed"].every(n => names.includes(n));
				});
			}
			for (const user of users) {
				const token = tokenFor(user);
				const mine = accepted.filter(o => o.user === user).map(o => o.id);
				await eventually(`${user}'s confirmations`, async () => {
					const notes = (await http(base, "GET", "/api/notifications?pageSize=100", { token })).body.rows as Array<{ title: string; orderId?: string }>;
					return mine.every(id => notes.some(n => n.title === "Order confirmed" && n.orderId === id));
				});
				const ledger = (await http(base, "GET", "/api/wallet/transactions?pageSize=100", { token })).body.rows as Array<{ reason: string; orderId?: string; amount: number }>;
				const debits = ledger.filter(t => t.reason === "PAYMENT");
				expect(debits.map(t => t.orderId).sort()).toEqual([...mine].sort());
				expect((await http(base, "GET", "/api/wallet", { token })).body.balance).toBe(100_000 - debits.reduce((sum, t) => sum + t.amount, 0));
			}
		} finally {
			node.child.kill("SIGKILL");
			await node.exit;
			data.remove();
		}
	}, 240_000);

	it("writes no token into its logs or traces, even one sent as ?access_token=", async () => {
		const data = tempDir();
		const port = await freePort();
		const node = startNode({ DATA_DIR: data.dir, PORT: String(port), LOG_LEVEL: "info", TRACING_EXPORTER: "console" });
		const token = tokenFor("alice");
		try {
			await eventually("the start-up banner", async () => node.output().includes("is up"), 60000);
			const order = "00000000-0000-4000-8000-000000000000";
			expect((await fetch(`http://127.0.0.1:${port}/api/orders/${order}/stream?access_token=${token}`)).status).toBe(404);
			expect((await fetch(`http://127.0.0.1:${port}/api/wallet?access_token=${token}&page=1`, { headers: { Authorization: `Bearer ${token}` } })).status).toBe(200);
			await eventually("the request lines", async () => node.output().includes(`/api/wallet?access_token=[REDACTED]&page=1 200`), 10000);
			node.child.kill("SIGTERM");
			expect(await node.exit).toBe(0);
			expect(node.output()).toContain(`/api/orders/${order}/stream?access_token=[REDACTED] 404`);
			expect(node.output()).not.toContain(token);
			expect(node.output()).not.toContain(token.split(".")[2]); // not even the signature
		} finally {
			node.child.kill("SIGKILL");
			data.remove();
		}
	});

	/** `npm run start:node` in its own process group, as a shell's job would be. */
	function npmStart(env: Record<string, string>) {
		const child = spawn("npm", ["run", "--silent", "start:node"], { cwd: ROOT, env: { ...CLEAN_ENV, LOG_LEVEL: "info", METRICS_PORT: "0", ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
		let output = "";
		child.stdout!.on("data", d => (output += d));
		child.stderr!.on("data", d => (output += d));
		const exit = new Promise<number | null>(resolve => child.on("exit", resolve));
		const groupGone = () => {
			try {
				process.kill(-child.pid!, 0);
				return false;
			} catch {
				return true;
			}
		};
		return { child, output: () => output, exit, groupGone };
	}

	it.each([
		["npm's process", (pid: number) => process.kill(pid, "SIGTERM")],
		["the whole process group", (pid: number) => process.kill(-pid, "SIGTERM")],
		["the whole process group with SIGINT (Ctrl-C)", (pid: number) => process.kill(-pid, "SIGINT")],
	])("`npm run start:node` stops once, gracefully, with exit 0 and nothing left behind, when %s is signalled", async (_, signal) => {
		const data = tempDir();
		const node = npmStart({ DATA_DIR: data.dir, PORT: String(await freePort()) });
		try {
			await eventually("the start-up banner", async () => node.output().includes("is up"), 60000);
			signal(node.child.pid!);
			expect(await node.exit).toBe(0);
			await eventually("every process of the group to exit", async () => node.groupGone(), 5000);
			expect(node.output().match(/Shutting down/g)).toHaveLength(1);
		} finally {
			if (!node.groupGone()) process.kill(-node.child.pid!, "SIGKILL");
			data.remove();
		}
	});

	it("stops within its bound with a client stalled mid-request", async () => {
		const data = tempDir();
		const port = await freePort();
		const node = startNode({ DATA_DIR: data.dir, PORT: String(port), HTTP_REQUEST_TIMEOUT_MS: "2000", HTTP_HEADERS_TIMEOUT_MS: "1000" });
		const socket = new net.Socket();
		try {
			await eventually("the start-up banner", async () => node.output().includes("is up"), 60000);
			await new Promise<void>(resolve => socket.connect(port, "127.0.0.1", resolve));
			socket.on("error", () => undefined);
			socket.write(`POST /api/cart/validate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokenFor("alice")}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"items":`);
			await new Promise(r => setTimeout(r, 300));
			const t0 = Date.now();
			node.child.kill("SIGTERM");
			expect(await node.exit).toBe(0);
			expect(Date.now() - t0).toBeLessThan(8000); // the request timeout (2 s) and the stop itself
		} finally {
			socket.destroy();
			node.child.kill("SIGKILL");
			data.remove();
		}
	});

	it("keeps its DATA_DIR to itself: a second process on it stops at start with one line", async () => {
		const data = tempDir();
		const node = startNode({ DATA_DIR: data.dir, PORT: String(await freePort()) });
		try {
			await eventually("the start-up banner", async () => node.output().includes("is up"), 60000);
			expect(await refusal({ DATA_DIR: data.dir, PORT: String(await freePort()), METRICS_PORT: "0" })).toMatch(
				new RegExp(`^checkout: failed to start: DATA_DIR .* is in use by process ${node.child.pid}; stop that process or set another DATA_DIR$`),
			);
			node.child.kill("SIGTERM");
			expect(await node.exit).toBe(0);
			// Its owner gone, the directory is free again.
			const again = startNode({ DATA_DIR: data.dir, PORT: String(await freePort()) });
			await eventually("the second start-up", async () => again.output().includes("is up"), 60000);
			again.child.kill("SIGTERM");
			expect(await again.exit).toBe(0);
		} finally {
			node.child.kill("SIGKILL");
			data.remove();
		}
	});
});
