import type { ServiceBroker } from "moleculer";
import { runtimeOf } from "./runtime";

export interface Readiness {
	status: "ok" | "unavailable";
	/** Each dependency this node uses: "ok" or what is wrong with it. */
	checks: Record<string, string>;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
	let timer: NodeJS.Timeout | undefined;
	const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not answer in ${ms} ms`)), ms)));
	return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Readiness of this node (SPEC section 4): every local service has started, its database,
 * transporter and, when configured, Redis and Kafka answer, and it is not shutting down. Checks run in parallel, each bounded.
 */
export async function checkReadiness(broker: ServiceBroker, timeoutMs = 2000): Promise<Readiness> {
	const runtime = runtimeOf(broker);
	const { config } = runtime;
	const probes: Record<string, () => Promise<unknown>> = {};
	if (runtime.usesDatabase) probes.database = async () => (await runtime.database()).sequelize.query("SELECT 1");
	if (config.transporter) {
		probes.transporter = async () => {
			if (!broker.transit?.connected) throw new Error("not connected");
		};
	}
	if (config.redisUrl) probes.redis = async () => runtime.redis()!.ping();
	if (config.kafkaBrokers) probes.kafka = () => runtime.pingKafka();

	const checks: Record<string, string> = {};
	if (runtime.shuttingDown) checks.shutdown = "node is shutting down";
	// The gateway answers as soon as it listens, before the node's other services have started
	// (migrations, consumers): a request sent then would wait on them and time out.
	else if (!broker.started) checks.services = "starting";
	const results = await Promise.all(
		Object.entries(probes).map(async ([name, probe]) => {
			try {
				await withTimeout(probe(), timeoutMs, name);
				return [name, "ok"] as const;
			} catch (err) {
				return [name, (err as Error).message || String(err)] as const;
			}
		}),
	);
	for (const [name, result] of results) checks[name] = result; // in a fixed order, whatever answered first
	const status = Object.values(checks).every(v => v === "ok") ? "ok" : "unavailable";
	return { status, checks };
}
