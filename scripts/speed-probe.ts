import { Worker } from "node:worker_threads";
import { percentile } from "./percentile";

/**
 * How fast this machine's cores run during a benchmark, so that runs an hour (or a minute) apart
 * can be told apart from the code's own effect: the same code has run 1.5–2× slower from one hour
 * to the next here (bench/ANALYSIS.md). A fixed piece of JavaScript work (building, serializing and
 * parsing a few hundred event-like objects) runs once a second on a thread of its own and is timed
 * by that thread's CPU time, not by the clock: on a busy machine the clock would also count the
 * waits for a core, which is the load, while the CPU time moves only with how fast a core does the
 * work (the host's other tenants, a busy sibling hyperthread, the caches). The work is about 2 ms
 * of a core a second on a fast machine. A thread's CPU time advances in steps of a scheduler tick
 * when read this often, so the samples are means over windows of WINDOW units.
 */

const WINDOW = 5;

/** The worker's code, plain JavaScript so the thread needs no TypeScript loader. */
const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
function unit() {
	let checksum = 0;
	for (let round = 0; round < 4; round++) {
		const events = [];
		for (let i = 0; i < 250; i++) {
			events.push({ eventId: "e" + round + "-" + i, eventName: "stock.reserved", occurredAt: new Date(1e12 + i).toISOString(), data: { orderId: "o" + i, items: [{ productId: "p" + (i % 17), quantity: 1 + (i % 3) }], expiresAt: "2026-12-08T00:00:00.000Z" } });
		}
		for (const e of JSON.parse(JSON.stringify(events))) checksum += e.data.items[0].quantity;
	}
	return checksum;
}
const cpuMs = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };
for (let i = 0; i < 3; i++) unit(); // compiled and warm before the first window counts
let from = cpuMs();
let units = 0;
const timer = setInterval(() => {
	unit();
	if (++units < workerData.window) return;
	const now = cpuMs();
	parentPort.postMessage((now - from) / units);
	from = now;
	units = 0;
}, workerData.intervalMs);
parentPort.on("message", () => { clearInterval(timer); parentPort.close(); });
`;

export interface SpeedProbe {
	/** Stops the probe; its samples, each the mean CPU ms per unit of work over a window (lower is faster). */
	stop(): Promise<number[]>;
}

/** Starts doing the unit of work every `intervalMs` on a worker thread, a sample every `window` units. */
export function startSpeedProbe(intervalMs = 1000, window = WINDOW): SpeedProbe {
	const samples: number[] = [];
	const worker = new Worker(WORKER, { eval: true, workerData: { intervalMs, window } });
	worker.on("message", (ms: number) => samples.push(Math.round(ms * 100) / 100));
	worker.unref();
	return {
		async stop() {
			const exited = new Promise<void>(resolve => worker.once("exit", () => resolve()));
			worker.postMessage("stop");
			await exited;
			return samples;
		},
	};
}

/** A run's probe, summarized: the median and the spread of its samples. */
export function speedOf(samples: number[]): { p50: number; min: number; max: number; samples: number } | undefined {
	if (samples.length === 0) return undefined;
	const sorted = [...samples].sort((a, b) => a - b);
	return { p50: percentile(sorted, 50), min: sorted[0], max: sorted[sorted.length - 1], samples: sorted.length };
}
