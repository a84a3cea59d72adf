/**
 * `npm start` / `npm run start:node`: one node. With nothing set it is the embedded default
 * (every service, PGlite under DATA_DIR, in-process cacher and lock); with TRANSPORTER,
 * DATABASE_URL, REDIS_URL, KAFKA_BROKERS and SERVICES it is one node of a cluster.
 */
import { loadConfig } from "../lib/config";
import { createNode } from "../lib/node";
import { preflight } from "../lib/preflight";
import { fail, handleSignals } from "./main";

async function main(): Promise<void> {
	const config = loadConfig();
	await preflight(config);
	const broker = createNode(config);
	handleSignals(broker);
	await broker.start();
	const services = broker.services.filter(s => !s.name.startsWith("$")).map(s => s.name).join(", ") || "none";
	const lines = [`Checkout node ${broker.nodeID} is up (${config.transporter ? `cluster over ${config.transporter}` : "embedded"}); services: ${services}.`];
	if (broker.getLocalService("gateway")) {
		lines.push(`  Shop:   http://localhost:${config.port}/   console: http://localhost:${config.port}/#/admin`);
		lines.push(`  API:    http://localhost:${config.port}/api   docs: http://localhost:${config.port}/api/docs   health: http://localhost:${config.port}/health/ready`);
		lines.push(`  Token:  npm run token -- --sub alice --role customer`);
	}
	if (config.metricsPort > 0) lines.push(`  Metrics: http://localhost:${config.metricsPort}/metrics`);
	console.log(lines.join("\n"));
}

main().catch(fail);
