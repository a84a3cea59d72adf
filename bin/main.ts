import type { ServiceBroker } from "moleculer";
import { ConfigError } from "../lib/config";
import { shutdown } from "../lib/node";

/** One clear line for what stops a node at start-up; the stack only at LOG_LEVEL=debug/trace. */
export function fail(err: unknown): never {
	const e = err as Error;
	if (err instanceof ConfigError) {
		console.error(`checkout: configuration error: ${e.message}`);
	} else {
		console.error(`checkout: failed to start: ${e?.message ?? String(err)}`);
		if (/^(debug|trace)$/i.test(process.env.LOG_LEVEL ?? "")) console.error(e?.stack);
	}
	process.exit(1);
}

/**
 * First signal: graceful shutdown; a second one forces the exit. A repeat within a second is the
 * same request arriving twice (a signal to the process group reaches npm, which forwards it, and
 * this process), not an operator insisting.
 */
export function handleSignals(broker: ServiceBroker): void {
	let stoppingSince = 0;
	const onSignal = (signal: string) => {
		if (stoppingSince) {
			if (Date.now() - stoppingSince < 1000) return;
			process.exit(1);
		}
		stoppingSince = Date.now();
		broker.logger.info(`${signal} received.`);
		shutdown(broker).then(
			() => process.exit(0),
			err => {
				console.error(`checkout: shutdown failed: ${(err as Error).message}`);
				process.exit(1);
			},
		);
	};
	process.on("SIGTERM", () => onSignal("SIGTERM"));
	process.on("SIGINT", () => onSignal("SIGINT"));
}
