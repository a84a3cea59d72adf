import type { Context, ServiceSchema } from "moleculer";
import { checkReadiness } from "../lib/health";
import { runtimeOf } from "../lib/runtime";

/**
 * On every node, whatever SERVICES says: what an operator asks of a node by its ID (the REPL's
 * `health`). Internal (`$`), so it is neither balanced into the domain nor published over HTTP.
 */
const OpsService: ServiceSchema = {
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
};

export default OpsService;
