/**
 * The embedded database's socket directories: one per process, named after it, so that one a
 * killed process left behind is removed by the next start (lib/pglite-thread.ts).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { sweepStaleSocketDirs } from "../../lib/pglite-thread";

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
