import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { ServiceBroker, ServiceSchema } from "moleculer";
import { loadConfig, type Config } from "../../lib/config";
import { createNode } from "../../lib/node";

export interface TestNode {
	broker: ServiceBroker;
	config: Config;
	/** The gateway's base URL, when this node runs the gateway. */
	url: string;
	stop(): Promise<void>;
}

/** Ports of their own for nodes started side by side (the gateway's and the metrics'). */
export const OWN_PORTS = { PORT: "0", METRICS_PORT: "0" };

/** Settings that keep a test node quick and quiet (quicker sweeps, fewer retries than a deployment's); any of them can be overridden. */
export const TEST_ENV = {
	...OWN_PORTS,
	LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "fatal",
	OUTBOX_POLL_MS: "100",
	EVENT_MAX_ATTEMPTS: "3",
};

export function tempDir(prefix = "checkout-test-"): { dir: string; remove(): void } {
	const dir = mkdtempSync(path.join(tmpdir(), prefix));
	return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** An in-process node (no transporter unless `env` sets one), started. */
export async function startTestNode(env: Record<string, string>, extra: ServiceSchema<any, any, any, any>[] = []): Promise<TestNode> {
	const config = loadConfig({ ...TEST_ENV, ...env });
	const broker = createNode(config, extra);
	await broker.start();
	const gateway = broker.getLocalService("gateway") as any;
	const url = gateway ? `http://127.0.0.1:${gateway.listeningPort()}` : "";
	return { broker, config, url, stop: () => broker.stop() };
}

/** Polls `probe` until it returns a truthy value or `timeoutMs` passes (then throws `what`). */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 20000, everyMs = 100): Promise<T> {
	const deadline = Date.now() + timeoutMs;
	let last: unknown;
	while (Date.now() < deadline) {
		try {
			const value = await probe();
			if (value) return value;
		} catch (err) {
			last = err;
		}
		await new Promise(r => setTimeout(r, everyMs));
	}
	throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}`);
}

/** A TCP port nobody listens on right now. */
export function freePort(): Promise<number> {
	return new Promise(resolve => {
		const srv = net.createServer().listen(0, "127.0.0.1", () => {
			const { port } = (srv.address() as net.AddressInfo);
			srv.close(() => resolve(port));
		});
	});
}
