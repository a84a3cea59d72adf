/**
 * The real entry point (`npm start` = bin/node.ts) as a child process: it comes up on embedded
 * defaults, shuts down on SIGTERM, and refuses bad settings with one clear line.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { tempDir, eventually, freePort } from "../helpers/node";

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
});
