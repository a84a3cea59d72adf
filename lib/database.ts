import { mkdirSync } from "node:fs";
import { Sequelize } from "sequelize";
import type { Config } from "./config";
import { lockDataDir } from "./data-dir-lock";
import { startPgliteThread, type PgliteFailureHandler } from "./pglite-thread";
import { shareOneSession } from "./sql";

/** The node's one Sequelize instance (one pool) and, in embedded mode, the PGlite behind it. */
export interface Database {
	sequelize: Sequelize;
	/** Where it lives, without credentials, for logs. */
	describe: string;
	/** The node has started (its migrations ran): embedded, PGlite's thread is watched for hangs from now on (EMBEDDED_STUCK_MS). */
	started(): void;
	close(): Promise<void>;
}

/** From a URL, or for embedded mode a Unix socket's directory as `host`. */
function sequelizeFor(where: string | { host: string; port: number }, poolMax: number): Sequelize {
	const options = {
		dialect: "postgres" as const,
		logging: false,
		pool: { max: poolMax, min: 0, idle: 10000, acquire: 30000 },
		define: { underscored: true, timestamps: false },
	};
	if (typeof where === "string") return new Sequelize(where, options);
	return new Sequelize({ ...options, ...where, username: "postgres", database: "postgres" });
}

function redact(url: string): string {
	const u = new URL(url);
	if (u.password) u.password = "***";
	return u.toString();
}

/**
 * Embedded mode: real PostgreSQL compiled to WASM (PGlite) on a thread of its own, served on a
 * private Unix socket so that `pg` and Sequelize speak to it exactly as to a server: one SQL
 * dialect everywhere. The socket server queues statements and keeps a transaction's statements on
 * its connection.
 */
async function openEmbedded(config: Config, onFailure?: PgliteFailureHandler): Promise<Database> {
	const inMemory = config.dataDir.startsWith("memory://");
	if (!inMemory) mkdirSync(config.dataDir, { recursive: true });
	const unlock = inMemory ? () => undefined : lockDataDir(config.dataDir);
	const pglite = await startPgliteThread({
		dataDir: inMemory ? config.dataDir : `${config.dataDir}/pgdata`,
		maxConnections: config.dbPoolMax + 2,
		profileFile: config.pgliteProfile,
	}, onFailure).catch(err => {
		unlock();
		throw err;
	});
	const sequelize = sequelizeFor({ host: pglite.socketDir, port: pglite.port }, config.dbPoolMax);
	shareOneSession(sequelize);
	return {
		sequelize,
		describe: `embedded PGlite (${config.dataDir})`,
		started: () => pglite.watchForHangs(config.embeddedStuckMs),
		async close() {
			await sequelize.close();
			await pglite.stop();
			unlock();
		},
	};
}

/** `onFailure`: the embedded database failed after it started (a server's failures reach the pool's clients as errors). */
export async function openDatabase(config: Config, onFailure?: PgliteFailureHandler): Promise<Database> {
	if (!config.databaseUrl) return openEmbedded(config, onFailure);
	const sequelize = sequelizeFor(config.databaseUrl, config.dbPoolMax);
	return { sequelize, describe: redact(config.databaseUrl), started: () => undefined, close: () => sequelize.close() };
}
