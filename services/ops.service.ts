import http from "node:http";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { checkReadiness } from "../lib/health";
import { runtimeOf } from "../lib/runtime";
import { watchIncarnations } from "../lib/incarnations";
import { runEvery, type Periodic } from "../lib/periodic";
import { sqlQuery } from "../lib/sql";

type OpsThis = Service & { server?: http.Server; onNodeInfo: ReturnType<typeof watchIncarnations>; housekeeping?: Periodic };

/** Every how many vacuums the planner's statistics are refreshed too (once a minute by default). */
const ANALYZE_EVERY = 6;
/**
 * The statistics' sample for the embedded database: 3,000 rows a table instead of PostgreSQL's
 * 30,000. Its ANALYZE of every table held the one PGlite session for about 2 s once a minute (no
 * checkout confirmed meanwhile); the plans here read by key, by status or by due time, which
 * ten-value statistics describe as well.
 */
const EMBEDDED_STATISTICS_TARGET = 10;

/**
 * The embedded database's housekeeping. PGlite runs PostgreSQL in single-user mode: no autovacuum
 * and no checkpointer. Without the VACUUM every update leaves a dead row that nothing removes, and
 * the outboxes, the orders and the reservations slow down the longer a node runs (measured: 72,
 * 58, 52 checkouts/s in three runs back to back, 65/s again after one VACUUM); it takes the
 * database for a moment (tens of ms). Without the CHECKPOINT the WAL is never recycled: it grew by
 * about 6 MB a second under load (1.3 GB in a 220 s run) until the node stopped. Taken once
 * EMBEDDED_CHECKPOINT_MB of WAL was written since the last one, it keeps the WAL on disk near
 * that size.
 */
function embeddedHousekeeping(this: OpsThis): Periodic | undefined {
	const runtime = runtimeOf(this.broker);
	if (runtime.config.databaseUrl) return undefined; // a server's autovacuum does it
	let runs = 0;
	return runEvery(
		runtime.config.embeddedVacuumMs,
		async () => {
			if (!runtime.usesDatabase) return; // no service of this node opened it
			const { sequelize } = await runtime.database();
			await sqlQuery(sequelize, "VACUUM");
			const [wal] = await sqlQuery<{ mb: string }>(sequelize, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), redo_lsn) / 1048576 AS mb FROM pg_control_checkpoint()");
			if (Number(wal.mb) >= runtime.config.embeddedCheckpointMb) await sqlQuery(sequelize, "CHECKPOINT");
			// One message is one implicit transaction: SET LOCAL lasts for it, and a failing ANALYZE rolls
			// back by itself (an explicit BEGIN would leave the one shared session in a failed transaction).
			if (++runs % ANALYZE_EVERY === 0) await sqlQuery(sequelize, `SET LOCAL default_statistics_target = ${EMBEDDED_STATISTICS_TARGET}; ANALYZE`);
		},
		this.logger,
		"The embedded database's housekeeping",
	);
}

/** A node said who it is (INFO): its instance ID tells whether it restarted. */
function nodeAnnounced(this: OpsThis, ctx: Context<{ node: Parameters<OpsThis["onNodeInfo"]>[0] }>) {
	this.onNodeInfo(ctx.params.node);
}

/**
 * On every node, whatever SERVICES says: what an operator or an orchestrator asks of one node.
 * `readiness` for the REPL's `health`; with HEALTH_PORT, /health/live and /health/ready on that
 * port, so nodes without the gateway can be probed too; a node restarted under the same nodeID
 * has the requests of its previous process retried (lib/incarnations.ts); an embedded node's
 * database is vacuumed and checkpointed (embeddedHousekeeping). Internal (`$`): not
 * balanced into the domain, not published over the API.
 */
const OpsService: ServiceSchema<ServiceSettingSchema, Record<string, any>, Record<string, any>, OpsThis> = {
	name: "$ops",
	actions: {
		readiness: {
			async handler(ctx: Context) {
				const runtime = runtimeOf(this.broker);
				const readiness = await checkReadiness(this.broker);
				return {
					nodeID: this.broker.nodeID,
					services: this.broker.services.map(s => s.name).filter(n => !n.startsWith("$")),
					uptimeSeconds: Math.round(process.uptime()),
					memoryMb: Math.round(process.memoryUsage().rss / 1024 / 1024),
					shuttingDown: runtime.shuttingDown,
					requestID: ctx.requestID,
					...readiness,
				};
			},
		},
	},
	events: {
		"$node.connected": nodeAnnounced,
		"$node.updated": nodeAnnounced,
	},
	created(this: OpsThis) {
		this.onNodeInfo = watchIncarnations(this.broker);
	},
	async started(this: OpsThis) {
		this.housekeeping = embeddedHousekeeping.call(this);
		const { healthPort } = runtimeOf(this.broker).config;
		if (!healthPort) return;
		this.server = http.createServer(async (req, res) => {
			const send = (status: number, body: unknown) => {
				res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store" });
				res.end(JSON.stringify(body));
			};
			if (req.method !== "GET") return send(405, { error: { code: "METHOD_NOT_ALLOWED", message: "GET only" } });
			if (req.url === "/health/live") return send(200, { status: "ok" });
			if (req.url === "/health/ready") {
				const readiness = await checkReadiness(this.broker);
				return send(readiness.status === "ok" ? 200 : 503, readiness);
			}
			send(404, { error: { code: "ROUTE_NOT_FOUND", message: "Not found" } });
		});
		await new Promise<void>((resolve, reject) => {
			this.server!.once("error", reject);
			this.server!.listen(healthPort, "0.0.0.0", () => resolve());
		});
	},
	async stopped(this: OpsThis) {
		await this.housekeeping?.stop();
		await new Promise<void>(resolve => (this.server ? this.server.close(() => resolve()) : resolve()));
	},
};

export default OpsService;
