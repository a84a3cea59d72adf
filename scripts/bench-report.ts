/** bench/REPORT.md, written from what `npm run bench` and `npm run bench:floor` keep in bench/results. */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { ProfileSummary } from "./cpu-profile";
import { stepsLine } from "./order-steps";

type Trio = { p50: number; p95: number; p99: number };

/** One run of one profile, as bench/results/<target>-<profile>.json keeps it. */
export interface Run {
	target: string;
	profile: string;
	date: string;
	concurrency: number;
	/** How the customers paid: `wallet`, or `mixed` (wallet and card in turn; every run before 2026-12-05 but the bursts). */
	payment?: string;
	rate: number | null;
	confirmedPerSecond: number;
	postOrdersMs: Trio;
	orderToConfirmedMs: Trio;
	/** Each step of a confirmed order (`CREATED → PAYMENT_PENDING`, …) in ms; runs before 2026-12-06 have none. */
	stepsMs?: Record<string, Trio>;
	errors: Record<string, number>;
	cpuPercent: { avg: number; max: number };
	/** The machine's speed during the run (scripts/speed-probe.ts: CPU ms per unit of work, lower is faster); runs before 2026-12-08 have none. */
	machineProbeMs?: { p50: number; min: number; max: number; samples: number };
	processes: Record<string, { cpuAvg: number; cpuMax: number; rssMaxMb: number; system: boolean }>;
	/** PGlite's time by statement (BENCH_PGLITE_PROF). */
	pglite?: { ms: number; msPerCheckout: number; statements: Array<{ statements: string; perCheckout: number; msPerCheckout: number; percent: number }> };
	/** The burst profile's drain. */
	burst?: { orders: number; accepted: number; postedSeconds: number; doorPerSecond: number; drainSeconds: number; unsettled: number; longestWithoutConfirmationSeconds: number };
}

/** bench/REPORT.md from every result kept in bench/results, the pgbench floor and bench/ANALYSIS.md. */
export function writeReport(ROOT: string): void {
	const dir = path.join(ROOT, "bench/results");
	const read = (f: string) => JSON.parse(readFileSync(path.join(dir, f), "utf8"));
	const files = readdirSync(dir).filter(f => f.endsWith(".json")).sort();
	const runs = files.map(f => ({ file: f.replace(/\.json$/, ""), ...read(f) })).filter(r => r.postOrdersMs) as Array<Run & { file: string }>;
	const sql = files.includes("sql-per-checkout.json") ? read("sql-per-checkout.json") : undefined;
	// Round trips: statements sent together in one message (BEGIN with the first statement, a write with the COMMIT) count once.
	const trips = (count: { roundTrips?: number }) => (count.roundTrips ? ` (${count.roundTrips} round trips)` : "");
	const floor = files.includes("floor.json") ? read("floor.json") : undefined;
	const profiles = files.filter(f => f.endsWith("cpu-profile.json")).map(read) as Array<{ target: string; profile: string; date: string; nodes: Array<ProfileSummary & { node: string }> }>;
	const trio = (x: Trio) => `${x.p50} / ${x.p95} / ${x.p99}`;
	const ofFloor = (r: Run) => {
		const tps = floor?.[r.target === "embedded" ? "embedded" : "postgres"]?.tps;
		return r.profile === "checkout" && !r.rate && tps ? `${Math.round((r.confirmedPerSecond / tps) * 1000) / 10} %` : "";
	};
	const analysis = existsSync(path.join(ROOT, "bench/ANALYSIS.md")) ? readFileSync(path.join(ROOT, "bench/ANALYSIS.md"), "utf8") : "";
	const report = `# Benchmark report

Written by \`npm run bench\` from the results kept in \`bench/results/\` (the latest run of each target,
profile and rate), on this 2-core machine, the load generator on the same cores. Reproduce:
\`npm run bench\` (embedded), \`BENCH_TARGET=cluster npm run bench\` (local cluster on NATS,
PostgreSQL, Redis, Kafka), \`npm run bench:floor\` (the pgbench floor), \`BENCH_CPU_PROF=1\` (profiles). The machine probe
is the CPU time a fixed piece of work took on a thread of the load generator's, once a second
during the run (\`scripts/speed-probe.ts\`): it moves with the machine's speed, not with the load, so
runs whose probes differ much ran on a faster or slower machine.

## Results

| target | profile | customers, payments / rate | date | confirmed checkouts/s | of the floor | POST /orders p50 / p95 / p99 ms | order → CONFIRMED p50 / p95 / p99 ms | errors | system CPU % of one core, avg / max | machine probe, CPU ms (p50) |
|---|---|---|---|---|---|---|---|---|---|---|
${runs.map(r => `| ${r.target} | ${r.profile} | ${r.concurrency}, ${r.payment ?? (r.profile === "burst" ? "wallet" : "mixed")}${r.rate ? ` / ${r.rate} per s` : ""} | ${r.date?.slice(0, 16).replace("T", " ") ?? ""} | ${r.confirmedPerSecond} | ${ofFloor(r)} | ${trio(r.postOrdersMs)} | ${trio(r.orderToConfirmedMs)} | ${Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(", ") || "none"} | ${r.cpuPercent.avg} / ${r.cpuPercent.max} | ${r.machineProbeMs?.p50 ?? ""} |`).join("\n")}

### Bursts

${runs.filter(r => r.burst).map(r => `- **${r.file}** (${r.date.slice(0, 16).replace("T", " ")}): ${r.burst!.accepted} of ${r.burst!.orders} orders accepted in ${r.burst!.postedSeconds} s (${r.burst!.doorPerSecond}/s at the door); the last settled ${r.burst!.drainSeconds} s after the first was posted: **${r.confirmedPerSecond} confirmed/s** over the drain; order → CONFIRMED p50 / p99 ${r.orderToConfirmedMs.p50} / ${r.orderToConfirmedMs.p99} ms; longest stretch without a confirmation ${r.burst!.longestWithoutConfirmationSeconds} s; unsettled at the end ${r.burst!.unsettled}.`).join("\n") || "No burst run kept: `BENCH_PROFILES=burst npm run bench`."}

### Where a confirmed order's time goes, step by step (p50/p95 ms, from each order's own status history; "customer": until its stream showed CONFIRMED)

${runs.filter(r => r.stepsMs).map(r => `- **${r.file}**: ${stepsLine(r.stepsMs)}`).join("\n") || "No run with steps kept yet."}

### Per process (CPU % of one core avg / max, RSS max MB; a group's RSS is the sum of its processes', so PostgreSQL's shared buffers count once per backend)

${runs.map(r => `- **${r.file}**: ${Object.entries(r.processes ?? {}).map(([name, p]) => `${name} ${p.cpuAvg} / ${p.cpuMax} %, ${p.rssMaxMb} MB`).join("; ")}`).join("\n")}

## SQL per checkout

${sql ? `Counted by \`npm run bench:sql\` (${sql.orders} orders of each kind on an embedded node, ${sql.date.slice(0, 10)}): a wallet checkout runs ${sql.WALLET.statements} statements in ${sql.WALLET.transactions} transactions${trips(sql.WALLET)}, a card checkout ${sql.CARD.statements} in ${sql.CARD.transactions}${trips(sql.CARD)}, from \`order.create\` to the last event handled after CONFIRMED (audit, notification, voucher), each checkout alone.${sql.WALLET_BURST ? ` In a burst of ${sql.burst} wallet orders placed at once, where consumers take the events waiting for them as batches, a checkout costs ${sql.WALLET_BURST.statements} statements in ${sql.WALLET_BURST.transactions} transactions${trips(sql.WALLET_BURST)}, amortized.` : ""}${sql.WALLET_32_CUSTOMERS ? ` With ${sql.customers} customers each placing its next order once the last is confirmed (the closed-loop benchmark's saturation), ${sql.WALLET_32_CUSTOMERS.statements} statements in ${sql.WALLET_32_CUSTOMERS.transactions} transactions${trips(sql.WALLET_32_CUSTOMERS)}${sql.WALLET_32_CUSTOMERS.walKb ? `, and the database writes ${sql.WALLET_32_CUSTOMERS.walKb} KB of WAL per checkout (${sql.WALLET.walKb} KB for a checkout alone)` : ""}.` : ""}${sql.WALLET_32_CUSTOMERS_AFTER_CHECKPOINT ? ` The same customers again once ${sql.preload} more orders are in and a checkpoint has just passed: ${sql.WALLET_32_CUSTOMERS_AFTER_CHECKPOINT.walKb} KB of WAL per checkout, ${sql.WALLET_32_CUSTOMERS_AFTER_CHECKPOINT.fullPageImages} of them whole pages (full-page images).` : ""} The floor below does it in 7.` : "Not counted yet: `npm run bench:sql`."}

## The floor

${floor ? floor.description + "\n\n| database | clients | transactions/s | latency avg ms |\n|---|---|---|---|\n" + ["postgres", "embedded"].filter(k => floor[k]).map(k => `| ${floor[k].label} | ${floor[k].clients} | ${floor[k].tps} | ${floor[k].latencyMs} |`).join("\n") : "Not measured yet: `npm run bench:floor`."}

## Where the CPU goes

${profiles.map(p => `Profiled with \`--cpu-prof\` during the ${p.target} ${p.profile} run of ${p.date.slice(0, 10)} (self time in the load's window).\n\n${p.nodes.map(n => `**${n.node}** (${n.seconds} s sampled): by package ${n.byPackage.slice(0, 8).map(c => `${c.name} ${c.percent} %`).join(", ")}. Top functions: ${n.byFunction.slice(0, 8).map(c => `${c.name} ${c.percent} %`).join(", ")}.`).join("\n\n")}`).join("\n\n") || "No profile kept: `BENCH_CPU_PROF=1 npm run bench`."}

## Where PGlite's time goes

${runs.filter(r => r.pglite).map(r => `**${r.file}** (${r.date.slice(0, 16).replace("T", " ")}, ${r.confirmedPerSecond} confirmed/s, \`BENCH_PGLITE_PROF=1\`): PGlite's thread ran statements for **${r.pglite!.msPerCheckout} ms per confirmed checkout** in the load's window. By protocol message (its statements' shapes; \`;\` separates the statements of one message):\n\n| per checkout | ms per checkout | % of PGlite's time | statements |\n|---|---|---|---|\n${r.pglite!.statements.map(e => `| ${e.perCheckout} | ${e.msPerCheckout} | ${e.percent} | \`${e.statements.slice(0, 200).replace(/\|/g, "\\|").replace(/`/g, "'")}\` |`).join("\n")}`).join("\n\n") || "No statement profile kept: `BENCH_PGLITE_PROF=1 BENCH_PROFILES=checkout npm run bench`."}

## Charts

${runs.map(r => `![${r.file}](${r.file}.svg)`).join("\n")}

${analysis}`;
	writeFileSync(path.join(ROOT, "bench/REPORT.md"), report);
}

