/**
 * `npm run repl`: the Moleculer REPL for operators. With TRANSPORTER set it is a node without
 * services that joins the running cluster; without, it runs the embedded system in this process.
 */
import { loadConfig } from "../lib/config";
import { createNode } from "../lib/node";
import { preflight } from "../lib/preflight";
import { fail } from "./main";
import { REPL_COMMANDS } from "../lib/repl-commands";

async function main(): Promise<void> {
	const env = loadConfig();
	const config = env.transporter ? { ...env, services: [], nodeID: env.nodeID ?? `repl-${process.pid}`, metricsPort: 0 } : env;
	await preflight(config);
	const broker = createNode(config);
	broker.options.replOptions = { customCommands: REPL_COMMANDS as any };
	await broker.start();
	await broker.repl();
}

main().catch(fail);
