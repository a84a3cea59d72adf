import net from "node:net";
import { accessSync, constants, mkdirSync } from "node:fs";
import { Client } from "pg";
import Redis from "ioredis";
import { ConfigError, postgresServer, usesDatabase, type Config } from "./config";
import { DataDirInUseError, dataDirHolder } from "./data-dir-lock";

const TIMEOUT_MS = 4000;

function tcpProbe(host: string, port: number): Promise<void> {
	return new Promise((resolve, reject) => {
		const socket = net.connect({ host, port, timeout: TIMEOUT_MS });
		socket.once("connect", () => {
			socket.destroy();
			resolve();
		});
		socket.once("timeout", () => {
			socket.destroy();
			reject(new Error(`no answer in ${TIMEOUT_MS} ms`));
		});
		socket.once("error", err => reject(err));
	});
}

function reason(err: unknown): string {
	const e = err as NodeJS.ErrnoException;
	return e.code ? `${e.code}${e.message && !e.message.includes(e.code) ? ` ${e.message}` : ""}` : e.message;
}

async function checkDatabase(url: string): Promise<void> {
	const client = new Client({ connectionString: url, connectionTimeoutMillis: TIMEOUT_MS });
	try {
		await client.connect();
		await client.query("SELECT 1");
	} catch (err) {
		const { host, port, socketDir } = postgresServer(url);
		throw new ConfigError("DATABASE_URL", `cannot connect to ${socketDir ?? `${host}:${port}`}${new URL(url).pathname} (${reason(err)})`);
	} finally {
		await client.end().catch(() => undefined);
	}
}

async function checkRedis(url: string): Promise<void> {
	const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: TIMEOUT_MS });
	redis.on("error", () => undefined);
	try {
		await redis.connect();
		await redis.ping();
	} catch (err) {
		const u = new URL(url);
		throw new ConfigError("REDIS_URL", `cannot connect to ${u.hostname}:${u.port || 6379} (${reason(err)})`);
	} finally {
		redis.disconnect();
	}
}

async function checkTcp(variable: string, host: string, port: number): Promise<void> {
	try {
		await tcpProbe(host, port);
	} catch (err) {
		throw new ConfigError(variable, `cannot connect to ${host}:${port} (${reason(err)})`);
	}
}

function checkPortFree(variable: string, port: number): Promise<void> {
	if (port === 0) return Promise.resolve();
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.once("error", err => reject(new ConfigError(variable, `cannot listen on port ${port} (${reason(err)})`)));
		server.listen(port, "0.0.0.0", () => server.close(() => resolve()));
	});
}

function checkDataDir(dir: string): void {
	if (dir.startsWith("memory://")) return;
	try {
		mkdirSync(dir, { recursive: true });
		accessSync(dir, constants.W_OK);
	} catch (err) {
		throw new ConfigError("DATA_DIR", `cannot write to ${dir} (${reason(err)})`);
	}
	const holder = dataDirHolder(dir);
	if (holder !== undefined) throw new DataDirInUseError(dir, holder);
}

/**
 * Start-up checks that every configured server answers, before the broker starts, so an
 * unreachable setting stops the node with one line naming the variable instead of retry loops.
 */
export async function preflight(config: Config): Promise<void> {
	const checks: Promise<void>[] = [];
	if (usesDatabase(config.services)) {
		if (config.databaseUrl) checks.push(checkDatabase(config.databaseUrl));
		else checkDataDir(config.dataDir);
	}
	if (config.services.includes("gateway")) checks.push(checkPortFree("PORT", config.port));
	if (config.metricsPort > 0) checks.push(checkPortFree("METRICS_PORT", config.metricsPort));
	if (config.healthPort > 0) checks.push(checkPortFree("HEALTH_PORT", config.healthPort));
	if (config.redisUrl) checks.push(checkRedis(config.redisUrl));
	if (config.transporter) {
		const u = new URL(config.transporter);
		checks.push(checkTcp("TRANSPORTER", u.hostname, Number(u.port || 4222)));
	}
	if (config.kafkaBrokers) {
		checks.push(
			Promise.any(
				config.kafkaBrokers.map(b => {
					const i = b.lastIndexOf(":");
					return checkTcp("KAFKA_BROKERS", b.slice(0, i), Number(b.slice(i + 1)));
				}),
			).catch((err: AggregateError) => {
				throw err.errors[0];
			}),
		);
	}
	// The first problem in variable order is the one reported.
	const results = await Promise.allSettled(checks);
	const failed = results.find(r => r.status === "rejected");
	if (failed) throw (failed as PromiseRejectedResult).reason;
}
