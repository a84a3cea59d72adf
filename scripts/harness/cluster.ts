import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { Client } from "pg";
import { Kafka, logLevel } from "kafkajs";
import type { ServiceBroker } from "moleculer";
import { loadConfig, postgresServer } from "../../lib/config";
import { createNode } from "../../lib/node";
import { TEST_ENV, eventually } from "./node";
import { NODE_FLAGS } from "../../lib/node-flags";

export const ROOT = path.resolve(__dirname, "../..");

/**
 * Where Debian and Ubuntu's PostgreSQL keeps its Unix socket. A local server is reached through
 * it when it is there, as libpq does by default: each message costs less than on loopback TCP
 * (bench/ANALYSIS.md, "A local PostgreSQL through its socket").
 */
const LOCAL_PG_SOCKETS = "/var/run/postgresql";
const localDatabaseUrl = () =>
	existsSync(`${LOCAL_PG_SOCKETS}/.s.PGSQL.5432`) ? `postgres://postgres@localhost/test?host=${LOCAL_PG_SOCKETS}` : "postgres://postgres@127.0.0.1:5432/test";

/** The servers the cluster suite talks to: the environment's, else the local defaults. */
export const SERVERS = {
	DATABASE_URL: process.env.DATABASE_URL ?? localDatabaseUrl(),
	REDIS_URL: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
	TRANSPORTER: process.env.TRANSPORTER ?? "nats://127.0.0.1:4222",
	KAFKA_BROKERS: process.env.KAFKA_BROKERS ?? "127.0.0.1:9092",
};

function reachable(where: { host: string; port: number } | { path: string }): Promise<void> {
	return new Promise((resolve, reject) => {
		const s = net.connect({ ...where, timeout: 3000 });
		s.once("connect", () => (s.destroy(), resolve()));
		s.once("timeout", () => (s.destroy(), reject(new Error("timeout"))));
		s.once("error", reject);
	});
}

/** A server's address in its URL (PostgreSQL's: a Unix socket where its `host` parameter names a directory). */
function addressOf(variable: keyof typeof SERVERS, url: string, defaultPort: number): { host: string; port: number } | { path: string } {
	if (variable === "DATABASE_URL") {
		const { host, port, socketDir } = postgresServer(url);
		return socketDir ? { path: `${socketDir}/.s.PGSQL.${port}` } : { host, port };
	}
	const u = new URL(url.includes("://") ? url : `tcp://${url.split(",")[0]}`);
	return { host: u.hostname, port: Number(u.port || defaultPort) };
}

/** One line per server of SERVERS that does not answer, naming it and its variable. */
export async function missingServers(): Promise<string[]> {
	const servers: Array<[string, keyof typeof SERVERS, number]> = [
		["PostgreSQL", "DATABASE_URL", 5432],
		["Redis", "REDIS_URL", 6379],
		["NATS", "TRANSPORTER", 4222],
		["Kafka", "KAFKA_BROKERS", 9092],
	];
	const missing: string[] = [];
	for (const [name, variable, port] of servers) {
		const address = addressOf(variable, SERVERS[variable], port);
		try {
			await reachable(address);
		} catch (err) {
			const at = "path" in address ? address.path : `${address.host}:${address.port}`;
			missing.push(`${name} is not reachable at ${at} (${variable}): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
		}
	}
	return missing;
}

/** A database of its own for one test file, dropped afterwards. */
export async function freshDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
	const name = `checkout_t_${randomBytes(4).toString("hex")}`;
	const admin = new Client({ connectionString: SERVERS.DATABASE_URL });
	await admin.connect();
	await admin.query(`CREATE DATABASE ${name}`);
	await admin.end();
	const url = new URL(SERVERS.DATABASE_URL);
	url.pathname = `/${name}`;
	return {
		url: url.toString(),
		async drop() {
			const c = new Client({ connectionString: SERVERS.DATABASE_URL });
			await c.connect();
			await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
			await c.end();
		},
	};
}

type KafkaAdmin = ReturnType<Kafka["admin"]>;
const topicsWith = async (admin: KafkaAdmin, prefix: string) => (await admin.listTopics()).filter(t => t.startsWith(prefix));

/** The Kafka topics named with `prefix` (a cluster's own, see clusterEnv). */
export async function topicsOf(prefix: string): Promise<string[]> {
	return withKafkaAdmin(admin => topicsWith(admin, prefix));
}

/**
 * Deletes a cluster's own topics (named with its `prefix`), as its database is dropped: every test
 * file and local cluster makes about sixty partitions, which the broker would otherwise keep for ever.
 */
export async function dropTopics(prefix: string): Promise<void> {
	if (!prefix) throw new Error("dropTopics needs a cluster's own topic prefix");
	await withKafkaAdmin(async admin => {
		const topics = await topicsWith(admin, prefix);
		if (topics.length > 0) await admin.deleteTopics({ topics });
	});
}

async function withKafkaAdmin<T>(fn: (admin: KafkaAdmin) => Promise<T>): Promise<T> {
	const admin = new Kafka({ clientId: "harness", brokers: SERVERS.KAFKA_BROKERS.split(","), logLevel: logLevel.NOTHING }).admin();
	await admin.connect();
	try {
		return await fn(admin);
	} finally {
		await admin.disconnect();
	}
}

/** One isolated cluster per test file: its own namespace, topic prefix and database, on `base` (the tests' settings unless told). */
export function clusterEnv(databaseUrl: string, base: Record<string, string> = TEST_ENV): Record<string, string> {
	const id = randomBytes(3).toString("hex");
	return {
		...base,
		...SERVERS,
		DATABASE_URL: databaseUrl,
		NAMESPACE: `t${id}`,
		KAFKA_TOPIC_PREFIX: `t${id}.`,
		KAFKA_SESSION_TIMEOUT_MS: "6000",
		LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn",
	};
}

export interface NodeProcess {
	name: string;
	child: ChildProcess;
	output(): string;
	exited: Promise<number | null>;
	stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a node as its own process (bin/node.ts, or the probe node when PROBES is set) and waits until it is up. */
export async function spawnNode(name: string, env: Record<string, string>): Promise<NodeProcess> {
	const entry = env.PROBES ? "test/fixtures/probe-node.ts" : "bin/node.ts";
	const child = spawn(process.execPath, [...NODE_FLAGS, "--import", "tsx", entry], {
		cwd: ROOT,
		env: { ...process.env, NODE_OPTIONS: "", NODE_ID: name, ...env },
		stdio: ["ignore", "pipe", "pipe"],
	});
	let output = "";
	// The latest output only: a node of `npm run cluster` may run for days.
	const keep = (d: Buffer) => (output = (output + d).slice(-256 * 1024));
	child.stdout!.on("data", keep);
	child.stderr!.on("data", keep);
	const exited = new Promise<number | null>(resolve => child.on("exit", code => resolve(code)));
	const node: NodeProcess = {
		name,
		child,
		output: () => output,
		exited,
		async stop(signal = "SIGTERM") {
			if (child.exitCode === null && child.signalCode === null) child.kill(signal);
			return exited;
		},
	};
	await Promise.race([
		eventually(`node ${name} to start`, async () => output.includes("is up"), 60000),
		exited.then(code => {
			throw new Error(`node ${name} exited with ${code} before it was up:\n${output}`);
		}),
	]);
	return node;
}

/** An in-process node with no services that joins the cluster to call it, as the REPL does. */
export async function startClient(env: Record<string, string>): Promise<ServiceBroker> {
	const config = { ...loadConfig({ ...env, SERVICES: "none" }), nodeID: `client-${process.pid}` };
	const broker = createNode(config);
	await broker.start();
	return broker;
}

/** Waits until `service` is served by `count` nodes in the client's registry. */
export async function waitForService(client: ServiceBroker, service: string, count = 1): Promise<void> {
	await eventually(`${count} node(s) with ${service}`, async () => {
		const list = client.registry.getServiceList({ onlyAvailable: true, skipInternal: true }) as Array<{ name: string }>;
		return list.filter(s => s.name === service).length >= count;
	}, 30000);
}

export interface TestCluster {
	env: Record<string, string>;
	client: ServiceBroker;
	nodes: NodeProcess[];
	databaseUrl: string;
	call<T = any>(action: string, params?: Record<string, any>): Promise<T>;
	/** Stops the nodes and drops the database and the Kafka topics, unless `keepDatabase` (to look into a failed run). */
	stop(opts?: { keepDatabase?: boolean }): Promise<void>;
}

/**
 * A cluster of its own for one test file: a fresh database, node processes started together (so
 * their migrations race, as in production) and a client node that waits for their services.
 */
export async function startCluster(nodes: Array<{ name: string; env: Record<string, string> }>, env: Record<string, string> = {}, base?: Record<string, string>): Promise<TestCluster> {
	const db = await freshDatabase();
	const clusterVars = { ...clusterEnv(db.url, base), ...env };
	const processes = await Promise.all(nodes.map(n => spawnNode(n.name, { ...clusterVars, ...n.env })));
	const client = await startClient(clusterVars);
	const counts = new Map<string, number>();
	for (const n of nodes) for (const s of n.env.SERVICES.split(",")) counts.set(s, (counts.get(s) ?? 0) + 1);
	for (const [service, count] of counts) if (service !== "none") await waitForService(client, service, count);
	// A node learns of the others from their INFO or its next heartbeat: a test that goes through one
	// node (the gateway's order calling inventory, say) must not start before it knows them all. A
	// burst once met an order node that did not know inventory yet, and the circuit breaker opened.
	const services = [...counts.keys()].filter(s => s !== "none");
	await Promise.all(nodes.map(n => waitForServicesOn(client, n.name, services)));
	return {
		env: clusterVars,
		client,
		nodes: processes,
		databaseUrl: db.url,
		call: (action, params = {}) => client.call(action, params),
		async stop({ keepDatabase = false } = {}) {
			await client.stop();
			await Promise.all(processes.map(p => p.stop("SIGKILL")));
			if (keepDatabase) return;
			await db.drop();
			if (clusterVars.KAFKA_BROKERS) await dropTopics(clusterVars.KAFKA_TOPIC_PREFIX);
		},
	};
}

/** Waits until node `nodeID`'s own registry lists `names` (`$node.actions` or `$node.services`) as available. */
async function waitForNamesOn(client: ServiceBroker, nodeID: string, list: "$node.actions" | "$node.services", names: string[]): Promise<void> {
	await eventually(`${nodeID} to know ${names.join(", ")}`, async () => {
		const known = await client.call<Array<{ name: string }>, Record<string, unknown>>(list, { onlyAvailable: true, skipInternal: true }, { nodeID });
		return names.every(n => known.some(k => k.name === n));
	}, 30000, 250);
}

/** Waits until node `nodeID`'s own registry knows `actions` (a node that started before a slower one learns of it by the next heartbeat). */
export const waitForActionsOn = (client: ServiceBroker, nodeID: string, actions: string[]) => waitForNamesOn(client, nodeID, "$node.actions", actions);

/** As waitForActionsOn, by service. */
export const waitForServicesOn = (client: ServiceBroker, nodeID: string, services: string[]) => waitForNamesOn(client, nodeID, "$node.services", services);
