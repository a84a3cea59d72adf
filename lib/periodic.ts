import type { Logger } from "moleculer";

/** A task run every `ms` milliseconds, never twice at once; `stop` waits for the run in progress. */
export interface Periodic {
	stop(): Promise<void>;
}

export function runEvery(ms: number, task: () => Promise<unknown>, logger: Logger, what: string): Periodic {
	let running: Promise<unknown> | undefined;
	const timer = setInterval(() => {
		if (running) return;
		running = task()
			.catch(err => logger.warn(`${what} failed: ${(err as Error).message}`))
			.finally(() => (running = undefined));
	}, ms);
	return {
		async stop() {
			clearInterval(timer);
			await running;
		},
	};
}
