import http from "node:http";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { checkReadiness } from "../lib/health";
import { runtimeOf } from "../lib/runtime";
import { watchIncarnations } from "../lib/incarnations";

type OpsThis = Service & { server?: http.Server; onNodeInfo: ReturnType<typeof watchIncarnations> };

/** A node said who it is (INFO): its instance ID tells whether it restarted. */
function nodeAnnounced(this: OpsThis, ctx: Context<{ node: Parameters<OpsThis["onNodeInfo"]>[0] }>) {
	this.onNodeInfo(ctx.params.node);
}

/**
 * On every node, whatever SERVICES says: what an operator or an orchestrator asks of one node.
 * `readiness` for the REPL's `health`; with HEALTH_PORT, /health/live and /health/ready on that
 * port, so nodes without the gateway can be probed too; a node restarted under the same nodeID
 * has the requests of its previous process retried (lib/incarnations.ts). Internal (`$`): not
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
		await new Promise<void>(resolve => (this.server ? this.server.close(() => resolve()) : resolve()));
	},
};

export default OpsService;
