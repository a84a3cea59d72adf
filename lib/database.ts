import { mkdirSync } from "node:fs";
import { Sequelize } from "sequelize";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import type { Config } from "./config";
import { lockDataDir } from "./data-dir-lock";
import { shareOneSession } from "./sql";

/** The node's one Sequelize instance (one pool) and, in embedded mode, the PGlite behind it. */
export interface Database {
	sequelize: Sequelize;
	/** Where it lives, without credentials, for logs. */
	describe: string;
	close(): Promise<void>;
}

function sequelizeFor(url: string, poolMax: number): Sequelize {
	return new Sequelize(url, {
		dialect: "postgres",
		logging: false,
		pool: { max: poolMax, min: 0, idle: 10000, acquire: 30000 },
		define: { underscored: true, timestamps: false },
	});
}

function redact(url: string): string {
	const u = new URL(url);
	if (u.password) u.password = "***";
	return u.toString();
}

/**
 * Embedded mode: real PostgreSQL compiled to WASM (PGlite), served on a loopback port so that
 * `pg` and Sequelize speak to it exactly as to a server: one SQL dialect everywhere.
 * The socket server queues statements and keeps a transaction's statements on its connection.
 */
async function openEmbedded(config: Config): Promise<Database> {
	const inMemory = config.dataDir.startsWith("memory://");
	if (!inMemory) mkdirSync(config.dataDir, { recursive: true });
	const unlock = inMemory ? () => undefined : lockDataDir(config.dataDir);
	const pglite = await PGlite.create(inMemory ? config.dataDir : `${config.dataDir}/pgdata`).catch(err => {
		unlock();
		throw err;
	});
	const server = new PGLiteSocketServer({ db: pglite, host: "127.0.0.1", port: 0, maxConnections: config.dbPoolMax + 2 });
	await server.start();
	const sequelize = sequelizeFor(`postgres://postgres@${server.getServerConn()}/postgres`, config.dbPoolMax);
	shareOneSession(sequelize);
	return {
		sequelize,
		describe: `embedded PGlite (${config.dataDir})`,
		async close() {
			await sequelize.close();
			await server.stop();
			await pglite.close();
			unlock();
		},
	};
}

export async function openDatabase(config: Config): Promise<Database> {
	if (!config.databaseUrl) return openEmbedded(config);
	const sequelize = sequelizeFor(config.databaseUrl, config.dbPoolMax);
	return { sequelize, describe: redact(config.databaseUrl), close: () => sequelize.close() };
}
