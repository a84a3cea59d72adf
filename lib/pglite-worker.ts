/** The PGlite thread's body (started by `lib/pglite-thread.ts`): PGlite and its socket server. */
import { parentPort, workerData } from "node:worker_threads";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import type { PgliteWorkerData, PgliteWorkerMessage } from "./pglite-thread";
import { profileStatements } from "./pglite-profile";

const { dataDir, socketPath, maxConnections, profileFile, busySince } = workerData as PgliteWorkerData;
const port = parentPort!;
const send = (m: PgliteWorkerMessage) => port.postMessage(m);

async function main(): Promise<void> {
	// A new 16 MB WAL segment is not filled with zeros first: through PGlite's file system those are
	// 16 MB copied out of WASM and written from JavaScript, a segment every few seconds under load,
	// for a guarantee (space allocated ahead) that only matters with fsync, which PGlite runs without.
	const pglite = await PGlite.create(dataDir, { startParams: [...PGlite.defaultStartParams, "-c", "wal_init_zero=off"] });
	reportFailures(pglite);
	const endProfile = profileFile ? profileStatements(pglite, profileFile) : undefined;
	const server = new PGLiteSocketServer({ db: pglite, path: socketPath, maxConnections });
	try {
		await server.start();
	} catch (err) {
		await pglite.close();
		throw err;
	}
	port.on("message", message => {
		if (message !== "close") return;
		void (async () => {
			await server.stop();
			await pglite.close();
			endProfile?.();
			send({ closed: true });
		})().catch((err: Error) => send({ failed: err.message }));
	});
	send({ ready: true });
}

/**
 * The first byte of each message pglite-socket hands over (one message at a time): the types
 * PostgreSQL reads from a client (src/backend/tcop/postgres.c, SocketBackend, and `p` while it
 * authenticates), or 0 for the startup packet, which has no type and whose length's first byte is 0.
 */
const CLIENT_MESSAGE_TYPES = new Set([0, ...Buffer.from("QFXBCDEHPSdcfp")]);

/**
 * A message PGlite throws on (rather than answering with an error) ends its WASM PostgreSQL, and
 * pglite-socket then serves no connection again: its queue stays marked busy for good
 * (electric-sql/pglite#1046), so every request would wait for ever. A message of a type PostgreSQL
 * does not know is worse: PGlite spins on it for ever, so it is never passed on. Either way the node
 * is told, and stops (lib/pglite-thread.ts `onFailure`); restarted, it recovers from its files. A
 * message that never ends blocks this thread, so it cannot be told from here: the node watches
 * `busySince` for it.
 */
function reportFailures(pglite: PGlite): void {
	const exec = pglite.execProtocolRawStream.bind(pglite);
	pglite.execProtocolRawStream = async (message, options) => {
		try {
			if (!CLIENT_MESSAGE_TYPES.has(message[0])) throw new Error(`a client sent a message of unknown type '${String.fromCharCode(message[0])}'`);
			Atomics.store(busySince, 0, BigInt(Date.now())); // watched by lib/pglite-thread.ts for a hang
			return await exec(message, options);
		} catch (err) {
			send({ failed: `PGlite failed: ${(err as Error).message}` });
			throw err;
		} finally {
			Atomics.store(busySince, 0, 0n);
		}
	};
}

main().catch((err: Error) => send({ failed: err.message }));
