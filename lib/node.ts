import { ServiceBroker, type ServiceSchema } from "moleculer";
import { createBrokerOptions } from "../moleculer.config";
import type { Config } from "./config";
import { Runtime, attachRuntime, runtimeOf } from "./runtime";
import { SERVICE_SCHEMAS } from "../services";
import OpsService from "../services/ops.service";

/**
 * Builds one node: a broker configured from `config`, its runtime (shared pool and clients,
 * closed when the broker stops) and the services named in SERVICES. `extra` adds schemas, as
 * the tests do with their probe services.
 */
export function createNode(config: Config, extra: ServiceSchema<any, any, any, any>[] = []): ServiceBroker {
	const options = createBrokerOptions(config);
	const runtime = new Runtime(config, options.nodeID!, (message, err) => broker.fatal(message, err));
	const broker = new ServiceBroker({
		...options,
		// bin/node.ts owns the signals: it drains (readiness 503) before stopping the broker.
		skipProcessEventRegistration: true,
		started: () => runtime.started(),
		stopped: () => runtime.close(),
	});
	attachRuntime(broker, runtime);
	broker.createService(OpsService);
	for (const name of config.services) {
		const schema = SERVICE_SCHEMAS[name];
		if (schema) broker.createService(schema);
	}
	for (const schema of extra) broker.createService(schema);
	return broker;
}

/** SIGTERM/SIGINT: fail readiness, wait SHUTDOWN_DRAIN_MS for balancers, then stop in order. */
export async function shutdown(broker: ServiceBroker): Promise<void> {
	const runtime = runtimeOf(broker);
	if (runtime.shuttingDown) return;
	runtime.shuttingDown = true;
	broker.logger.info(`Shutting down: draining for ${runtime.config.shutdownDrainMs} ms.`);
	// Long-lived responses (order streams) end now; the broker then waits only for real requests.
	await broker.broadcastLocal("node.shutting-down");
	await new Promise(resolve => setTimeout(resolve, runtime.config.shutdownDrainMs));
	await broker.stop();
}
