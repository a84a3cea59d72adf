/**
 * `npm run seed`: loads the demo catalogue into DATABASE_URL (products whose SKU is missing).
 * The embedded default seeds itself on its first start, so this is for PostgreSQL deployments.
 */
import { ConfigError, loadConfig } from "../lib/config";
import { createNode } from "../lib/node";
import { preflight } from "../lib/preflight";
import { fail } from "./main";

async function main(): Promise<void> {
	const env = loadConfig();
	if (!env.databaseUrl) throw new ConfigError("DATABASE_URL", "is required: the embedded default seeds itself on its first start");
	// A private one-node broker on the shared database: it runs the migrations, then seeds.
	const config = { ...env, transporter: undefined, services: ["inventory" as const], metricsPort: 0, nodeID: `seed-${process.pid}` };
	await preflight(config);
	const broker = createNode(config);
	await broker.start();
	try {
		console.log(`Added ${await broker.call<number>("inventory.seed")} demo products.`);
	} finally {
		await broker.stop();
	}
}

main().catch(fail);
