import { openSync, readFileSync, rmSync, writeSync, closeSync } from "node:fs";
import path from "node:path";

export class DataDirInUseError extends Error {
	constructor(dir: string, pid: number) {
		super(`DATA_DIR ${dir} is in use by process ${pid}; stop that process or set another DATA_DIR`);
		this.name = "DataDirInUseError";
	}
}

function alive(pid: number): boolean {
	try {
		process.kill(pid, 0);
		return true;
	} catch (err) {
		return (err as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
	}
}

/** The live process other than this one that holds `dir`'s lock, if any. */
export function dataDirHolder(dir: string): number | undefined {
	let holder: number;
	try {
		holder = Number(readFileSync(path.join(dir, ".lock"), "utf8").trim());
	} catch {
		return undefined; // no lock
	}
	return Number.isInteger(holder) && holder > 0 && holder !== process.pid && alive(holder) ? holder : undefined;
}

/**
 * Takes `<dir>/.lock` for this process: PGlite's files belong to one process, and a second one
 * (the REPL beside `npm start`) would corrupt them. A lock left by a process that died is taken
 * over. Returns the release.
 */
export function lockDataDir(dir: string): () => void {
	const file = path.join(dir, ".lock");
	for (let attempt = 0; attempt < 2; attempt++) {
		try {
			const fd = openSync(file, "wx");
			writeSync(fd, String(process.pid));
			closeSync(fd);
			return () => {
				try {
					if (readFileSync(file, "utf8") === String(process.pid)) rmSync(file);
				} catch {
					// already gone
				}
			};
		} catch (err) {
			if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
			const holder = dataDirHolder(dir);
			if (holder !== undefined) throw new DataDirInUseError(dir, holder);
			rmSync(file, { force: true }); // stale: its process is gone
		}
	}
	throw new Error(`cannot lock DATA_DIR ${dir}`);
}
