/**
 * `npm run bench:floor`: what the database alone can do, for the benchmark to be measured against.
 * pgbench (from the PostgreSQL client packages) runs bench/pgbench/checkout.sql, the minimum SQL of
 * one checkout in one transaction, with as many clients as the benchmark has customers:
 *   - on the PostgreSQL the cluster uses (DATABASE_URL or the local default), in a fresh database;
 *   - on PGlite, the embedded default's database, on its own thread behind the same socket server the node uses.
 * BENCH_SECONDS (20), BENCH_CONCURRENCY (32). Writes bench/results/floor.json and bench/REPORT.md.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Client } from "pg";
import { startPgliteThread } from "../lib/pglite-thread";
import { postgresServer } from "../lib/config";
import { freshDatabase } from "./harness/cluster";
import { writeReport } from "./bench-report";

const ROOT = path.resolve(__dirname, "..");
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const CLIENTS = Number(process.env.BENCH_CONCURRENCY ?? 32);
const SCHEMA = readFileSync(path.join(ROOT, "bench/pgbench/schema.sql"), "utf8");
const SCRIPT = path.join(ROOT, "bench/pgbench/checkout.sql");

interface Floor {
	label: string;
	clients: number;
	tps: number;
	latencyMs: number;
}

/**
 * pgbench against `url`; its "tps = …" and "latency average = …" lines. Asynchronous: for PGlite
 * the server answering pgbench runs in this very process.
 */
async function pgbench(url: string, label: string, clients: number): Promise<Floor> {
	const u = new URL(url);
	const { host, port } = postgresServer(url);
	const args = ["-n", "-M", "simple", "-f", SCRIPT, "-c", String(clients), "-j", "2", "-T", String(SECONDS), "-h", host, "-p", String(port), "-U", decodeURIComponent(u.username || "postgres"), u.pathname.slice(1)];
	console.log(`floor: pgbench ${args.join(" ")}`);
	const child = spawn("pgbench", args, { env: { ...process.env, PGPASSWORD: decodeURIComponent(u.password) } });
	let out = "";
	child.stdout.on("data", d => (out += d));
	child.stderr.on("data", d => (out += d));
	const status = await new Promise<number | null>(resolve => child.on("close", resolve));
	const tps = /tps = ([\d.]+)/.exec(out);
	const latency = /latency average = ([\d.]+) ms/.exec(out);
	if (status !== 0 || !tps || !latency) throw new Error(`pgbench failed on ${label} (exit ${status}):\n${out.slice(-2000)}`);
	const floor = { label, clients, tps: Math.round(Number(tps[1])), latencyMs: Number(latency[1]) };
	console.log(`floor: ${label}: ${floor.tps} checkouts/s, ${floor.latencyMs} ms average`);
	return floor;
}

/** Creates the floor's tables; returns the server's version. */
async function applySchema(url: string): Promise<string> {
	const client = new Client({ connectionString: url });
	await client.connect();
	try {
		await client.query(SCHEMA);
		return (await client.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0].v;
	} finally {
		await client.end();
	}
}

async function onPostgres(): Promise<Floor> {
	const db = await freshDatabase();
	try {
		const version = await applySchema(db.url);
		return await pgbench(db.url, `PostgreSQL ${version} (${new URL(db.url).host})`, CLIENTS);
	} finally {
		await db.drop();
	}
}

/** On disk, as the embedded default keeps its data. */
async function onPglite(): Promise<Floor> {
	const dataDir = mkdtempSync(path.join(tmpdir(), "floor-pglite-"));
	// A PGlite that fails serves no client again (lib/pglite-worker.ts): end the run rather than wait on it.
	const pglite = await startPgliteThread({ dataDir, maxConnections: CLIENTS + 2 }, err => {
		console.error(`floor: PGlite failed: ${err.message}`);
		process.exit(1);
	});
	const url = `postgres://postgres@${encodeURIComponent(pglite.socketDir)}:${pglite.port}/postgres`;
	try {
		const version = await applySchema(url);
		return await pgbench(url, `PGlite (PostgreSQL ${version} in WASM on a worker thread, on disk, via pglite-socket on a Unix socket)`, CLIENTS);
	} finally {
		await pglite.stop();
		rmSync(dataDir, { recursive: true, force: true });
	}
}

async function main(): Promise<void> {
	if (spawnSync("pgbench", ["--version"]).error) throw new Error("pgbench is not installed (Debian: apt-get install postgresql-client)");
	const postgres = await onPostgres();
	const embedded = await onPglite();
	writeFileSync(
		path.join(ROOT, "bench/results/floor.json"),
		JSON.stringify(
			{
				date: new Date().toISOString(),
				seconds: SECONDS,
				description: `pgbench runs \`bench/pgbench/checkout.sql\` (take the stock, debit the wallet and write its ledger line, insert the order and one outbox event, in one transaction; tables from \`bench/pgbench/schema.sql\`) for ${SECONDS} s with ${CLIENTS} clients on 2 threads, on the same machine. "Of the floor" above is confirmed checkouts per second divided by this floor's transactions per second: the cluster against PostgreSQL, the embedded default against PGlite.`,
				postgres,
				embedded,
			},
			null,
			2,
		) + "\n",
	);
	writeReport(ROOT);
	console.log("floor: wrote bench/results/floor.json and bench/REPORT.md");
}

main().catch(err => {
	console.error(`floor: ${(err as Error).message}`);
	process.exit(1);
});
