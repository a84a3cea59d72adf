/**
 * The embedded PostgreSQL (PGlite) on a thread of its own, served on a Unix socket.
 *
 * Why a thread: PGlite is PostgreSQL compiled to WASM and runs on the thread that hosts it. On the
 * node's own thread it took a third of that thread's time, beside the nine services and the HTTP
 * server; on a worker thread it runs on the machine's second core.
 * Why a Unix socket in a private directory (mode 0700, see `mkdtemp`): the database has no
 * password, so it must not listen where any local process can reach it (a loopback TCP port).
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";

export interface PgliteThreadOptions {
	/** A directory for PGlite's files, or `memory://…`. */
	dataDir: string;
	/** The most connections the socket server accepts. */
	maxConnections: number;
	/** Where to keep the time each statement takes on PGlite's thread (lib/pglite-profile.ts), if anywhere. */
	profileFile?: string;
}

/** What the node is told, once, when the thread fails after it started (PGlite threw, or the thread ended): nothing it serves can be trusted to answer again. */
export type PgliteFailureHandler = (err: Error) => void;

/** What the worker is given. */
export interface PgliteWorkerData extends PgliteThreadOptions {
	socketPath: string;
	/** When PGlite began the message it works on (ms since the epoch), 0 between messages: written by the worker, watched here. */
	busySince: BigInt64Array;
}

/** Messages from the worker. */
export type PgliteWorkerMessage = { ready: true } | { closed: true } | { failed: string };

/** Where to connect (`pg`'s `host` is the socket's directory) and how to stop it. */
export interface PgliteThread {
	socketDir: string;
	port: number;
	/**
	 * From now on, PGlite working longer than `stuckMs` on one message counts as a hang, reported as
	 * a failure. Armed once the node has started: a start-up's migrations may rightly run longer, and
	 * a node stopped in one would run it again on every restart.
	 */
	watchForHangs(stuckMs: number): void;
	/** Stops the server and closes PGlite (its files flushed), then the thread ends. */
	stop(): Promise<void>;
}

const PORT = 5432; // only names the socket file: `<dir>/.s.PGSQL.5432`, where `pg` looks for it

/** The worker's file beside this one: `.ts` when run from source (through tsx's loader), `.js` when built. */
function workerFile(): { file: string; execArgv: string[] } {
	const ext = path.extname(__filename);
	const file = path.join(__dirname, `pglite-worker${ext}`);
	// A worker refuses V8's heap-size flags (ERR_WORKER_INVALID_EXEC_ARGV): they are the process's
	// (lib/node-flags.ts), so the worker gets the node's other options only.
	const execArgv = process.execArgv.filter(a => !HEAP_FLAG.test(a));
	return { file, execArgv: ext === ".ts" ? [...execArgv, "--import", pathToFileURL(require.resolve("tsx")).href] : execArgv };
}
const HEAP_FLAG = /^--(max|min)-(old|semi)-space-size(=|$)|^--max-heap-size(=|$)/;

const SOCKET_DIR_PREFIX = "checkout-pglite-";

/** Whether a process with this id runs (one we may not signal runs too). */
function alive(pid: number): boolean {
	try {
		process.kill(pid, 0);
		return true;
	} catch (err) {
		return (err as NodeJS.ErrnoException).code === "EPERM";
	}
}

/**
 * Removes the socket directories in `parent` that processes left when they were killed (SIGKILL
 * runs no exit handler): each is named after the process that made it, and removed once that
 * process is gone. Returns the names removed.
 */
export function sweepStaleSocketDirs(parent = tmpdir()): string[] {
	const stale = readdirSync(parent).filter(name => {
		const pid = Number(new RegExp(`^${SOCKET_DIR_PREFIX}(\\d+)-`).exec(name)?.[1]);
		return Number.isInteger(pid) && pid > 0 && !alive(pid);
	});
	for (const name of stale) rmSync(path.join(parent, name), { recursive: true, force: true });
	return stale;
}

/**
 * The worker's messages to `message`, and its failures to `failed`: a `failed` message, an error,
 * or the thread's end. Returns what stops listening.
 */
function listen(worker: Worker, message: (m: PgliteWorkerMessage) => void, failed: (err: Error) => void): () => void {
	const onMessage = (m: PgliteWorkerMessage) => ("failed" in m ? failed(new Error(m.failed)) : message(m));
	const onExit = (code: number) => failed(new Error(`the PGlite thread exited (${code})`));
	worker.on("message", onMessage).on("error", failed).on("exit", onExit);
	return () => void worker.off("message", onMessage).off("error", failed).off("exit", onExit);
}

/**
 * A message PGlite never finishes (a bug that spins, a statement that never ends) blocks its thread,
 * so it can report nothing itself, and every request of the node waits behind it while the process
 * lives on. So this thread reads when the message began, and reports a failure once it has run
 * past `stuckMs`: the node then stops, to be restarted on its files, as when PGlite throws.
 */
function watchForHang(busySince: BigInt64Array, stuckMs: number, fail: (err: Error) => void): NodeJS.Timeout {
	const timer = setInterval(() => {
		const since = Number(Atomics.load(busySince, 0));
		if (since > 0 && Date.now() - since > stuckMs) {
			clearInterval(timer);
			fail(new Error(`PGlite has worked on one message for over ${stuckMs} ms (EMBEDDED_STUCK_MS)`));
		}
	}, Math.min(1000, stuckMs / 4));
	return timer.unref();
}

export async function startPgliteThread(options: PgliteThreadOptions, onFailure?: PgliteFailureHandler): Promise<PgliteThread> {
	sweepStaleSocketDirs();
	const socketDir = mkdtempSync(path.join(tmpdir(), `${SOCKET_DIR_PREFIX}${process.pid}-`));
	const busySince = new BigInt64Array(new SharedArrayBuffer(8));
	const data: PgliteWorkerData = { ...options, socketPath: path.join(socketDir, `.s.PGSQL.${PORT}`), busySince };
	const { file, execArgv } = workerFile();
	const worker = new Worker(file, { workerData: data, execArgv });
	// Also when the process exits without stopping it (a SIGKILL leaves it to the next start's sweep).
	const removeDir = () => rmSync(socketDir, { recursive: true, force: true });
	process.once("exit", removeDir);
	const end = async () => {
		await worker.terminate();
		removeDir();
		process.off("exit", removeDir);
	};
	// The next message from the worker, or its failure.
	const next = () =>
		new Promise<PgliteWorkerMessage>((resolve, reject) => {
			const off = listen(worker, m => (off(), resolve(m)), err => (off(), reject(err)));
		});
	try {
		await next();
	} catch (err) {
		await end();
		throw err;
	}
	let stopped: Promise<void> | undefined;
	let failed = false;
	const fail = (err: Error) => {
		if (stopped || failed) return;
		failed = true;
		onFailure?.(err);
	};
	listen(worker, () => undefined, fail);
	let watch: NodeJS.Timeout | undefined;
	return {
		socketDir,
		port: PORT,
		watchForHangs(stuckMs) {
			clearInterval(watch);
			if (!stopped && !failed) watch = watchForHang(busySince, stuckMs, fail);
		},
		stop: () =>
			(stopped ??= (async () => {
				clearInterval(watch);
				const closed = next();
				worker.postMessage("close");
				try {
					await closed;
				} finally {
					await end();
				}
			})()),
	};
}
