/**
 * The embedded database's thread (lib/pglite-thread.ts): its socket directories, one per process,
 * named after it, so that one a killed process left behind is removed by the next start; and the
 * watch for a message PGlite never finishes, armed only once the node has started.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Client } from "pg";
import { startPgliteThread, sweepStaleSocketDirs } from "../../lib/pglite-thread";
import { NODE_FLAGS } from "../../lib/node-flags";

it("removes the socket directories of processes that are gone, and only those", () => {
	const parent = mkdtempSync(path.join(tmpdir(), "sweep-"));
	try {
		const gone = spawnSync(process.execPath, ["-e", ""]).pid; // a process that has exited
		const names = [`checkout-pglite-${gone}-a1B2c3`, `checkout-pglite-${process.pid}-d4E5f6`, "checkout-pglite-AqNEXs", "other"];
		for (const name of names) mkdirSync(path.join(parent, name));
		expect(sweepStaleSocketDirs(parent)).toEqual([`checkout-pglite-${gone}-a1B2c3`]);
		// A running process's directory stays, and so does a name that carries no process id.
		expect(readdirSync(parent).sort()).toEqual(names.slice(1).sort());
	} finally {
		rmSync(parent, { recursive: true, force: true });
	}
});

it("starts in a node started with the node's V8 flags, which a worker would refuse", () => {
	const script = `const { startPgliteThread } = require(${JSON.stringify(path.resolve(__dirname, "../../lib/pglite-thread.ts"))});
		startPgliteThread({ dataDir: "memory://", maxConnections: 1 }).then(t => t.stop()).then(() => console.log("started and stopped"));`;
	const run = spawnSync(process.execPath, [...NODE_FLAGS, "--import", "tsx", "-e", script], { cwd: path.resolve(__dirname, "../.."), env: { ...process.env, NODE_OPTIONS: "" }, encoding: "utf8", timeout: 60_000 });
	expect(run.stderr).not.toMatch(/ERR_WORKER_INVALID_EXEC_ARGV/);
	expect(run.stdout).toContain("started and stopped");
}, 70_000);

it("reports a message that runs past the bound only once the watch is armed: a start-up's long migration runs to its end", async () => {
	const failures: Error[] = [];
	const thread = await startPgliteThread({ dataDir: "memory://", maxConnections: 2 }, err => failures.push(err));
	const client = new Client({ host: thread.socketDir, port: thread.port, user: "postgres", database: "postgres" });
	client.on("error", () => undefined);
	try {
		await client.connect();
		// Before the node has started (its migrations): three times the bound, and nothing reported.
		await client.query("SELECT pg_sleep(1.5)");
		thread.watchForHangs(500);
		await client.query("SELECT pg_sleep(0.1)");
		expect(failures).toEqual([]);
		await client.query("SELECT pg_sleep(1.5)");
		expect(failures.map(e => e.message)).toEqual(["PGlite has worked on one message for over 500 ms (EMBEDDED_STUCK_MS)"]);
	} finally {
		await client.end().catch(() => undefined);
		await thread.stop();
	}
}, 30_000);
