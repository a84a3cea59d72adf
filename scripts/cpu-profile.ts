/**
 * Where a `--cpu-prof` profile spent its time, for the benchmark report: self time by package
 * (node_modules package, project file, or V8's own entries such as the garbage collector) and by
 * function, within a window of the run (the load, not the start-up).
 */

/** The parts of V8's .cpuprofile format read here. */
export interface CpuProfile {
	nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }>;
	startTime: number;
	endTime: number;
	samples: number[];
	timeDeltas: number[];
}

export interface CostLine {
	name: string;
	percent: number;
}

export interface ProfileSummary {
	/** Sampled seconds inside the window. */
	seconds: number;
	byPackage: CostLine[];
	byFunction: CostLine[];
}

/** `pg`, `@electric-sql/pglite`, `project:services/order.service.ts`, `(garbage collector)`, `wasm`, `node:net`. */
export function packageOf(url: string, functionName: string): string {
	if (!url) return functionName.startsWith("(") ? functionName : "(native)";
	const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
	if (inModules) return inModules[1];
	if (url.startsWith("wasm://")) return "wasm (PGlite's PostgreSQL)";
	if (url.startsWith("node:")) return url.replace(/^node:(internal\/)?(deps\/)?/, "node:").split("/")[0];
	const project = /\/(bin|lib|mixins|services|scripts|test)\/.+$/.exec(url);
	return project ? `project:${project[0].slice(1)}` : url;
}

const top = (costs: Map<string, number>, total: number, n: number): CostLine[] =>
	[...costs]
		.sort((a, b) => b[1] - a[1])
		.slice(0, n)
		.map(([name, us]) => ({ name, percent: Math.round((us / total) * 1000) / 10 }));

/** Self time of the samples taken between `fromUs` and `toUs` after the profile started (µs). */
export function summarizeProfile(profile: CpuProfile, fromUs = 0, toUs = Number.POSITIVE_INFINITY, n = 15): ProfileSummary {
	const selfTime = new Map<number, number>();
	let at = 0;
	profile.samples.forEach((nodeId, i) => {
		at += profile.timeDeltas[i] ?? 0;
		if (at >= fromUs && at < toUs) selfTime.set(nodeId, (selfTime.get(nodeId) ?? 0) + (profile.timeDeltas[i] ?? 0));
	});
	const byPackage = new Map<string, number>();
	const byFunction = new Map<string, number>();
	let total = 0;
	for (const node of profile.nodes) {
		const us = selfTime.get(node.id);
		if (!us) continue;
		total += us;
		const { functionName, url, lineNumber } = node.callFrame;
		const pkg = packageOf(url, functionName);
		byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + us);
		// V8's own entries ("(garbage collector)") and natives ("writeBuffer") have no script to name.
		const fn = !url ? (functionName.startsWith("(") ? functionName : `${functionName} (native)`) : `${functionName || "(anonymous)"} (${pkg}${url.startsWith("wasm") ? "" : `:${lineNumber + 1}`})`;
		byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
	}
	return { seconds: Math.round(total / 1e5) / 10, byPackage: top(byPackage, total || 1, n), byFunction: top(byFunction, total || 1, n) };
}
