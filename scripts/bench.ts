/**
 * `npm run bench`: load against a running system, in three profiles, with a report.
 *
 *   checkout  N customers each: validate the cart → order (BENCH_PAYMENT: `wallet`, the default and
 *             issue 12's target, or `mixed`, WALLET and CARD in turn) → follow the order's
 *             Server-Sent Events until CONFIRMED (as a storefront would, instead of polling)
 *   shop      a storefront mix: browse 10, product page 5, validate cart 3, checkout 1
 *   hot       every order for one product with limited stock
 *   burst     BENCH_BURST_ORDERS (1000) wallet orders posted back to back, then the time until the
 *             last one settled and the drain rate over time (a flash sale: not in the default list)
 *
 * BENCH_TARGET picks what it measures: `embedded` (default: starts `bin/node.ts` on a fresh
 * DATA_DIR), `cluster` (starts `npm run cluster`: node processes on NATS, PostgreSQL, Redis, Kafka),
 * or BENCH_URL, a running gateway. BENCH_PROFILES (checkout,shop,hot), BENCH_SECONDS (20),
 * BENCH_CONCURRENCY (32 customers), BENCH_RATE (checkouts started per second, open loop; default:
 * as fast as the customers go), BENCH_BURST_ORDERS and BENCH_BURST_TIMEOUT_S (600) for the burst, BENCH_CPU_PROF=1 (profile the node processes with --cpu-prof;
 * BENCH_KEEP_PROF=1 leaves the .cpuprofile files in their temporary folder, for a look at call stacks),
 * BENCH_PGLITE_PROF=1 (embedded, customer profiles: the time each statement holds PGlite's thread, per checkout).
 * CPU and memory are sampled per process from /proc: the nodes, and for a cluster PostgreSQL,
 * Kafka, NATS and Redis; the load generator is shown apart.
 * Writes bench/results/<target>-<profile>.json, bench/<target>-<profile>.svg and bench/REPORT.md.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { loadClient, tokenFor } from "./harness/http";
import { eventually, freePort } from "./harness/node";
import { spawnNode } from "./harness/cluster";
import { summarizeProfile, type CpuProfile } from "./cpu-profile";
import { writeReport } from "./bench-report";
import { addSteps, stepsLine, type StepTimes } from "./order-steps";
import { postBurst } from "./burst";
import { speedOf, startSpeedProbe } from "./speed-probe";
import { percentile } from "./percentile";
import { profileBetween, type StatementProfile } from "../lib/pglite-profile";

const { http, readEvents } = loadClient;

const ROOT = path.resolve(__dirname, "..");
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const PAYMENT = process.env.BENCH_PAYMENT ?? "wallet";
if (PAYMENT !== "wallet" && PAYMENT !== "mixed") throw new Error(`BENCH_PAYMENT is wallet or mixed, not ${PAYMENT}`);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const RATE = process.env.BENCH_RATE ? Number(process.env.BENCH_RATE) : undefined;
const PROFILES = (process.env.BENCH_PROFILES ?? "checkout,shop,hot").split(",");
const TARGET = process.env.BENCH_URL ? "url" : (process.env.BENCH_TARGET ?? "embedded");
const CPU_PROF = process.env.BENCH_CPU_PROF === "1";
const PGLITE_PROF = process.env.BENCH_PGLITE_PROF === "1";
const BURST_ORDERS = Number(process.env.BENCH_BURST_ORDERS ?? 1000);
/** How long the burst profile waits for its backlog to settle before it reports what is left. */
const BURST_TIMEOUT_S = Number(process.env.BENCH_BURST_TIMEOUT_S ?? 600);
const ADDRESS = { name: "B", line1: "L", city: "C", postalCode: "P", country: "DE" };
const ADMIN = tokenFor("bench-admin", "admin");
const ENDED = ["FAILED", "PAYMENT_FAILED", "CANCELLED"];

const summarize = (values: number[]) => {
	const s = [...values].sort((a, b) => a - b);
	return { count: s.length, p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99) };
};
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
/** Microseconds on the monotonic clock V8's profiles use. */
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

/** A process, or a group of processes (PostgreSQL's backends), whose CPU and memory are sampled. */
interface Watched {
	name: string;
	pids(): number[];
	/** Part of the system under test (the load generator is not). */
	system: boolean;
}

/** Processes whose command name (or command line) matches, found in /proc at each sample. */
function byCommand(match: (comm: string, cmdline: string) => boolean): () => number[] {
	return () =>
		readdirSync("/proc")
			.filter(d => /^\d+$/.test(d))
			.filter(d => {
				try {
					return match(readFileSync(`/proc/${d}/comm`, "utf8").trim(), readFileSync(`/proc/${d}/cmdline`, "utf8"));
				} catch {
					return false; // gone meanwhile
				}
			})
			.map(Number);
}

/** Per-second CPU (percent of one core) and RSS of each watched process, from /proc. */
function sampler(watched: Watched[]) {
	const ticks = 100;
	const lastCpu = new Map<number, number>();
	let lastAt = Date.now();
	const read = (pid: number) => {
		try {
			const stat = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
			return { cpu: (Number(stat[11]) + Number(stat[12])) / ticks, rssMb: (Number(stat[21]) * 4096) / 1048576 };
		} catch {
			return undefined;
		}
	};
	const take = () => {
		const at = Date.now();
		const seconds = Math.max(0.001, (at - lastAt) / 1000);
		lastAt = at;
		const usage: Record<string, { cpuPercent: number; rssMb: number }> = {};
		for (const w of watched) {
			let cpu = 0;
			let rss = 0;
			for (const pid of w.pids()) {
				const now = read(pid);
				if (!now) continue;
				const before = lastCpu.get(pid);
				if (before !== undefined) cpu += now.cpu - before;
				lastCpu.set(pid, now.cpu);
				rss += now.rssMb;
			}
			usage[w.name] = { cpuPercent: Math.round((cpu / seconds) * 100), rssMb: Math.round(rss) };
		}
		return usage;
	};
	take();
	return take;
}

interface Sample {
	second: number;
	confirmed: number;
	orderP95: number;
	/** CPU of the system under test, percent of one core (200 = both cores). */
	cpuPercent: number;
	usage: Record<string, { cpuPercent: number; rssMb: number }>;
}

/** A catalogue product, tried again while the system is still warming up (a missing one would skew the run). */
async function createProduct(base: string, body: Record<string, unknown>): Promise<{ id: string; price: number }> {
	for (let attempt = 1; ; attempt++) {
		const res = await http(base, "POST", "/api/products", { token: ADMIN, body });
		if (res.status === 201) return res.body;
		if (attempt === 5) throw new Error(`cannot create the catalogue: POST /api/products answered ${res.status} ${res.text.slice(0, 200)}`);
		await sleep(500 * attempt);
	}
}

const avg = (xs: number[]) => Math.round(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length));

/** One profile's result as bench/results keeps it: rates, latencies, errors, CPU per process. */
function runResult(r: {
	profile: string;
	seconds: number;
	rate: number | null;
	orderLatency: number[];
	confirmLatency: number[];
	steps: StepTimes;
	errors: Record<string, number>;
	errorSamples: Record<string, string>;
	watched: Watched[];
	samples: Sample[];
	window: { fromUs: number; toUs: number };
	probe: number[];
}) {
	return {
		target: TARGET,
		profile: r.profile,
		date: new Date().toISOString(),
		seconds: Math.round(r.seconds),
		concurrency: CONCURRENCY,
		payment: r.profile === "burst" ? "wallet" : PAYMENT,
		rate: r.rate,
		confirmedPerSecond: Math.round((r.confirmLatency.length / r.seconds) * 10) / 10,
		confirmed: r.confirmLatency.length,
		postOrdersMs: summarize(r.orderLatency),
		orderToConfirmedMs: summarize(r.confirmLatency),
		stepsMs: Object.fromEntries(Object.entries(r.steps).map(([step, ms]) => [step, summarize(ms)])),
		errors: r.errors,
		errorSamples: r.errorSamples,
		...usageOf(r.watched, r.samples),
		machineProbeMs: speedOf(r.probe),
		window: r.window,
		samples: r.samples,
	};
}

/** CPU of the system under test and of each watched process over a run's samples. */
function usageOf(watched: Watched[], samples: Sample[]) {
	return {
		cpuPercent: { avg: avg(samples.map(x => x.cpuPercent)), max: Math.max(0, ...samples.map(x => x.cpuPercent)) },
		processes: Object.fromEntries(
			watched.map(w => [
				w.name,
				{ cpuAvg: avg(samples.map(x => x.usage[w.name].cpuPercent)), cpuMax: Math.max(0, ...samples.map(x => x.usage[w.name].cpuPercent)), rssMaxMb: Math.max(0, ...samples.map(x => x.usage[w.name].rssMb)), system: w.system },
			]),
		),
	};
}

/** The profile's catalogue (1,000 products; one with 200 units for `hot`) and its customers with money in their wallets. */
async function prepare(base: string, profile: string) {
	const products: Array<{ id: string; price: number }> = [];
	const count = profile === "hot" ? 1 : 1000;
	for (let i = 0; i < count; i += 50) {
		const batch = await Promise.all(
			Array.from({ length: Math.min(50, count - i) }, (_, j) =>
				createProduct(base, { sku: `B-${profile}-${i + j}-${randomUUID().slice(0, 4)}`, name: `Bench ${i + j}`, category: `c${(i + j) % 20}`, price: 100 + ((i + j) % 50) * 10, stock: profile === "hot" ? 200 : 100000 }),
			),
		);
		products.push(...batch);
	}
	const users = Array.from({ length: CONCURRENCY }, (_, i) => `bench-${profile}-${i}`);
	for (const u of users) await http(base, "POST", "/api/wallet/top-ups", { token: tokenFor(u), body: { amount: 5_000_000, cardToken: "tok_visa" }, headers: { "Idempotency-Key": `seed-${u}` } });
	return { products, users };
}

async function runProfile(base: string, watched: Watched[], profile: string, pgliteProfile?: string) {
	if (profile === "burst") return runBurst(base, watched);
	const readPglite = (): StatementProfile => (pgliteProfile && existsSync(pgliteProfile) ? JSON.parse(readFileSync(pgliteProfile, "utf8")) : {});
	const { products, users } = await prepare(base, profile);

	const orderLatency: number[] = [];
	const confirmLatency: number[] = [];
	const steps: StepTimes = {};
	const errors: Record<string, number> = {};
	const perSecond = new Map<number, { confirmed: number; latencies: number[] }>();
	const start = Date.now();
	const second = () => Math.floor((Date.now() - start) / 1000);
	const bucket = () => perSecond.get(second()) ?? (perSecond.set(second(), { confirmed: 0, latencies: [] }), perSecond.get(second())!);
	/** The first answer seen for each error code, to tell what it was. */
	const errorSamples: Record<string, string> = {};
	const fail = (code: string, sample?: string) => {
		errors[code] = (errors[code] ?? 0) + 1;
		if (sample) errorSamples[code] ??= sample.slice(0, 300);
	};
	let running = true;
	let started = 0;
	/** Open loop with BENCH_RATE: the k-th checkout starts at k / rate seconds, whoever is free. */
	const pace = async () => {
		if (RATE) await sleep(start + (started++ * 1000) / RATE - Date.now());
	};

	const checkout = async (token: string, product: { id: string; price: number }, payment: Record<string, string>) => {
		await http(base, "POST", "/api/cart/validate", { token, body: { items: [{ productId: product.id, quantity: 1 }] } });
		const t0 = Date.now();
		const res = await http(base, "POST", "/api/orders", { token, body: { items: [{ productId: product.id, quantity: 1 }], shippingAddress: ADDRESS, payment } });
		const took = Date.now() - t0;
		orderLatency.push(took);
		bucket().latencies.push(took);
		if (res.status !== 201) return fail(res.body?.error?.code ?? String(res.status), res.text);
		const seen = await readEvents(`${base}/api/orders/${res.body.id}/stream`, token, events => events.some(e => e.data.status === "CONFIRMED" || ENDED.includes(e.data.status)), 30000).catch(async () => {
			// Not settled in 30 s: counted, with where the order stands, so a stuck saga and a stream that missed a transition are told apart.
			const now = await http(base, "GET", `/api/orders/${res.body.id}`, { token });
			fail("STREAM_TIMEOUT", `order ${res.body.id} is ${now.body?.status} (${JSON.stringify(now.body?.statusHistory?.map((h: { status: string; at: string }) => `${h.status}@${h.at}`))})`);
		});
		if (!seen) return;
		const last = seen.events.at(-1)?.data;
		if (last?.status === "CONFIRMED") {
			confirmLatency.push(Date.now() - t0);
			// The stream opens with the order as it is (its history in it), then a status event per change (the order in `order`).
			addSteps(steps, t0, (last.order ?? last).statusHistory ?? [], Date.now());
			bucket().confirmed++;
		} else fail(last ? (last.order?.failureCode ?? last.failureCode ?? last.status) : `STREAM_${seen.status}`);
	};
	const worker = async (user: string, i: number) => {
		const token = tokenFor(user);
		let n = 0;
		while (running) {
			n++;
			const product = products[Math.floor(Math.random() * products.length)];
			const payment: Record<string, string> = PAYMENT === "wallet" || (i + n) % 2 ? { method: "WALLET" } : { method: "CARD", cardToken: "tok_visa" };
			if (profile !== "shop" || n % 19 === 0) {
				await pace();
				if (running) await checkout(token, product, payment);
			} else {
				const kind = n % 19;
				const res =
					kind < 11
						? await http(base, "GET", `/api/products?category=c${n % 20}&sort=price&page=${1 + (n % 3)}`)
						: kind < 16
							? await http(base, "GET", `/api/products/${product.id}`)
							: await http(base, "POST", "/api/cart/validate", { token, body: { items: [{ productId: product.id, quantity: 1 }] } });
				if (res.status >= 400) fail(res.body?.error?.code ?? String(res.status), res.text);
			}
		}
	};
	const sample = sampler(watched);
	const samples: Sample[] = [];
	const ticker = setInterval(() => {
		const s = second() - 1;
		const b = perSecond.get(s);
		const usage = sample();
		const cpuPercent = watched.filter(w => w.system).reduce((sum, w) => sum + usage[w.name].cpuPercent, 0);
		samples.push({ second: s, confirmed: b?.confirmed ?? 0, orderP95: summarize(b?.latencies ?? []).p95, cpuPercent, usage });
	}, 1000);
	const loadFromUs = monotonicUs();
	const probe = startSpeedProbe();
	const pgliteBefore = readPglite();
	const load = Promise.all(users.map(worker));
	await sleep(SECONDS * 1000);
	running = false;
	await load;
	const loadToUs = monotonicUs();
	const probed = await probe.stop();
	await sleep(300); // PGlite's profile is written every quarter second
	const pglite = pgliteProfile ? profileBetween(pgliteBefore, readPglite()) : undefined;
	clearInterval(ticker);
	const elapsed = (Date.now() - start) / 1000;
	const result = runResult({ profile, seconds: elapsed, rate: RATE ?? null, orderLatency, confirmLatency, steps, errors, errorSamples, watched, samples, window: { fromUs: loadFromUs, toUs: loadToUs }, probe: probed });
	return pglite ? { ...result, pglite: pgliteSummary(pglite, result.confirmed) } : result;
}

/** PGlite's time in the load's window: in all, per confirmed checkout, and by statement. */
function pgliteSummary(entries: ReturnType<typeof profileBetween>, confirmed: number) {
	const ms = entries.reduce((sum, e) => sum + e.ms, 0);
	const per = (x: number) => Math.round((x / Math.max(1, confirmed)) * 1000) / 1000;
	return {
		ms: Math.round(ms),
		msPerCheckout: per(ms),
		statements: entries.slice(0, 25).map(e => ({ statements: e.statements, perCheckout: per(e.count), msPerCheckout: per(e.ms), percent: Math.round((e.ms / ms) * 1000) / 10 })),
	};
}

/**
 * The burst profile: BENCH_BURST_ORDERS wallet orders posted by the customers back to back, none
 * waiting for its confirmation (a flash sale), then the time until the last one has settled. The
 * backlog is read once a second from /analytics/orders; each order's own history gives its time
 * to CONFIRMED, and the confirmations per second show the drain rate over time.
 */
async function runBurst(base: string, watched: Watched[]) {
	const { products, users } = await prepare(base, "burst");
	const pendingNow = async () => (await http(base, "GET", "/api/analytics/orders", { token: ADMIN })).body.pendingOrders as number;
	const pendingBefore = await pendingNow();
	const sample = sampler(watched);
	const start = Date.now();
	const backlog: Array<{ second: number; pending: number; usage: Record<string, { cpuPercent: number; rssMb: number }> }> = [];
	let reading = false;
	const ticker = setInterval(() => {
		if (reading) return; // a slow answer is itself a finding: skip, don't pile up
		reading = true;
		pendingNow()
			.then(pending => backlog.push({ second: Math.round((Date.now() - start) / 1000), pending: pending - pendingBefore, usage: sample() }))
			.catch(() => undefined)
			.finally(() => (reading = false));
	}, 1000);
	const loadFromUs = monotonicUs();
	const probe = startSpeedProbe();
	const { orders, latencies: orderLatency, errors, errorSamples } = await postBurst(base, users, products.map(p => p.id), BURST_ORDERS);
	const postedSeconds = (Date.now() - start) / 1000;
	const deadline = Date.now() + BURST_TIMEOUT_S * 1000;
	while ((await pendingNow()) > pendingBefore && Date.now() < deadline) await sleep(500);
	const loadToUs = monotonicUs();
	const probed = await probe.stop();
	clearInterval(ticker);
	// Every order's outcome and its time to CONFIRMED, from its own status history.
	const confirmLatency: number[] = [];
	const steps: StepTimes = {};
	const confirmedAt: number[] = [];
	let lastSettledAt = start;
	for (let i = 0; i < orders.length; i += CONCURRENCY) {
		await Promise.all(
			orders.slice(i, i + CONCURRENCY).map(async o => {
				const { body } = await http(base, "GET", `/api/orders/${o.id}`, { token: o.token });
				const confirmed = body.statusHistory?.find((h: { status: string }) => h.status === "CONFIRMED");
				const last = body.statusHistory?.at(-1);
				if (last && !["CREATED", "PAYMENT_PENDING", "PAYMENT_SUCCESS"].includes(last.status)) lastSettledAt = Math.max(lastSettledAt, Date.parse(last.at));
				if (confirmed) {
					confirmLatency.push(Date.parse(confirmed.at) - o.postedAt);
					addSteps(steps, o.postedAt, body.statusHistory);
					confirmedAt.push(Date.parse(confirmed.at));
				} else errors[body.failureCode ?? body.status] = (errors[body.failureCode ?? body.status] ?? 0) + 1;
			}),
		);
	}
	const drainSeconds = Math.max(0.001, (lastSettledAt - start) / 1000);
	const perSecond = new Map<number, number>();
	for (const at of confirmedAt) perSecond.set(Math.floor((at - start) / 1000), (perSecond.get(Math.floor((at - start) / 1000)) ?? 0) + 1);
	const samples: Sample[] = backlog.map(b => ({
		second: b.second,
		confirmed: perSecond.get(b.second) ?? 0,
		orderP95: 0,
		cpuPercent: watched.filter(w => w.system).reduce((sum, w) => sum + b.usage[w.name].cpuPercent, 0),
		usage: b.usage,
	}));
	// The longest run of seconds in which a backlog waited and no order reached CONFIRMED (the
	// earlier steps may have moved meanwhile).
	let quiet = 0;
	let run = 0;
	for (const b of backlog) {
		run = b.pending > 0 && !perSecond.get(b.second) ? run + 1 : 0;
		quiet = Math.max(quiet, run);
	}
	return {
		...runResult({ profile: "burst", seconds: drainSeconds, rate: null, orderLatency, confirmLatency, steps, errors, errorSamples, watched, samples, window: { fromUs: loadFromUs, toUs: loadToUs }, probe: probed }),
		burst: {
			orders: BURST_ORDERS,
			accepted: orders.length,
			postedSeconds: Math.round(postedSeconds * 10) / 10,
			doorPerSecond: Math.round((orders.length / postedSeconds) * 10) / 10,
			drainSeconds: Math.round(drainSeconds * 10) / 10,
			unsettled: Math.max(0, (await pendingNow()) - pendingBefore),
			longestWithoutConfirmationSeconds: quiet,
			backlog: backlog.map(b => ({ second: b.second, pending: b.pending, confirmed: perSecond.get(b.second) ?? 0 })),
		},
	};
}

type Result = Awaited<ReturnType<typeof runProfile>>;

/** Throughput and POST /orders p95 per second as a small SVG line chart. */
function chart(result: Result): string {
	const w = 640;
	const h = 220;
	const pad = 36;
	const xs = result.samples;
	const maxT = Math.max(1, ...xs.map(s => s.confirmed));
	const maxL = Math.max(1, ...xs.map(s => s.orderP95));
	const x = (i: number) => pad + (i / Math.max(1, xs.length - 1)) * (w - 2 * pad);
	const line = (f: (s: Sample) => number, max: number) => xs.map((s, i) => `${x(i).toFixed(1)},${(h - pad - (f(s) / max) * (h - 2 * pad)).toFixed(1)}`).join(" ");
	return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="${pad}" y="16">${result.target} ${result.profile}: confirmed checkouts/s (blue, max ${maxT}) and POST /orders p95 ms (red, max ${maxL}) per second</text>
<line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}" stroke="#999"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${h - pad}" stroke="#999"/>
<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="${line(s => s.confirmed, maxT)}"/>
<polyline fill="none" stroke="#d1242f" stroke-width="1.5" points="${line(s => s.orderP95, maxL)}"/>
<text x="${w - pad}" y="${h - 10}" text-anchor="end">${xs.length} s</text>
</svg>`;
}

interface SystemUnderTest {
	base: string;
	watched: Watched[];
	/** Node name by pid, to name the CPU profiles. */
	nodes: Map<number, string>;
	/** The embedded database's statement profile (BENCH_PGLITE_PROF), a file it keeps up to date. */
	pgliteProfile?: string;
	stop(): Promise<void>;
}

/** Waits for `ready` in the child's output; throws with the output if it exits or times out first. */
async function waitForLine(child: ChildProcess, what: string, ready: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
	let out = "";
	child.stdout!.on("data", d => (out += d));
	child.stderr!.on("data", d => (out += d));
	try {
		return await eventually(what, async () => {
			if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}`);
			return ready.exec(out) ?? undefined;
		}, timeoutMs, 200);
	} catch (err) {
		child.kill("SIGKILL");
		throw new Error(`${(err as Error).message}:\n${out.slice(-3000)}`);
	}
}

const stopChild = async (child: ChildProcess) => {
	if (child.exitCode === null) child.kill("SIGTERM");
	await new Promise(r => (child.exitCode !== null ? r(undefined) : child.once("exit", r)));
};

const loadGenerator: Watched = { name: "load generator (this process)", pids: () => [process.pid], system: false };

async function startEmbedded(profDir?: string): Promise<SystemUnderTest> {
	const port = await freePort();
	const dataDir = mkdtempSync(path.join(tmpdir(), "bench-"));
	const pgliteProfile = PGLITE_PROF ? `${dataDir}/pglite-profile.json` : undefined;
	const node = await spawnNode("embedded", {
		...(pgliteProfile ? { PGLITE_PROFILE: pgliteProfile } : {}),
		...(profDir ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profDir}` } : {}),
		DATA_DIR: dataDir,
		PORT: String(port),
		METRICS_PORT: "0",
		LOG_LEVEL: "warn",
		RATE_LIMIT: "1000000",
	});
	const pid = node.child.pid!;
	return {
		base: `http://127.0.0.1:${port}`,
		watched: [{ name: "node (embedded: all services + PGlite)", pids: () => [pid], system: true }, loadGenerator],
		nodes: new Map([[pid, "embedded"]]),
		pgliteProfile,
		async stop() {
			await node.stop("SIGTERM");
			rmSync(dataDir, { recursive: true, force: true });
		},
	};
}

async function startLocalCluster(profDir?: string): Promise<SystemUnderTest> {
	const port = await freePort();
	const child = spawn(process.execPath, ["--import", "tsx", "scripts/cluster.ts"], {
		cwd: ROOT,
		env: { ...process.env, NODE_OPTIONS: "", CLUSTER_PORT: String(port), ...(profDir ? { CLUSTER_NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profDir}` } : {}) },
		stdio: ["ignore", "pipe", "pipe"],
	});
	const [, json] = await waitForLine(child, "the local cluster", /cluster ready (\{.*\})/, 180000);
	const ready = JSON.parse(json) as { url: string; nodes: Array<{ name: string; services: string; pid: number }> };
	return {
		base: ready.url,
		watched: [
			...ready.nodes.map(n => ({ name: `${n.name} (${n.services})`, pids: () => [n.pid], system: true })),
			{ name: "cluster script + mock card gateway", pids: () => [child.pid!], system: true },
			{ name: "PostgreSQL (all backends)", pids: byCommand(comm => comm === "postgres"), system: true },
			{ name: "Kafka", pids: byCommand((_, cmdline) => cmdline.includes("kafka.Kafka")), system: true },
			{ name: "NATS", pids: byCommand(comm => comm === "nats-server"), system: true },
			{ name: "Redis", pids: byCommand(comm => comm === "redis-server"), system: true },
			loadGenerator,
		],
		nodes: new Map(ready.nodes.map(n => [n.pid, `${n.name} (${n.services})`])),
		stop: () => stopChild(child),
	};
}

async function attach(): Promise<SystemUnderTest> {
	const pid = process.env.BENCH_PID ? Number(process.env.BENCH_PID) : undefined;
	return {
		base: process.env.BENCH_URL!,
		watched: [...(pid ? [{ name: `process ${pid}`, pids: () => [pid], system: true }] : []), loadGenerator],
		nodes: new Map(),
		stop: async () => undefined,
	};
}

/** The profiles the nodes wrote on exit, summarized over the first load's window. */
function profileSummaries(profDir: string, nodes: Map<number, string>, window: { fromUs: number; toUs: number }) {
	return readdirSync(profDir)
		.filter(f => f.endsWith(".cpuprofile"))
		.map(f => {
			// CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the node's own; the embedded node's PGlite runs on a worker.
			const [pid, thread] = [Number(f.split(".")[3]), Number(f.split(".")[4])];
			const profile = JSON.parse(readFileSync(path.join(profDir, f), "utf8")) as CpuProfile;
			const node = (nodes.get(pid) ?? `pid ${pid}`) + (thread === 0 ? "" : ` (worker thread ${thread})`);
			return { node, ...summarizeProfile(profile, window.fromUs - profile.startTime, window.toUs - profile.startTime) };
		})
		.sort((a, b) => a.node.localeCompare(b.node));
}

async function main() {
	const profDir = CPU_PROF ? mkdtempSync(path.join(tmpdir(), "bench-prof-")) : undefined;
	const system = TARGET === "url" ? await attach() : TARGET === "cluster" ? await startLocalCluster(profDir) : await startEmbedded(profDir);
	const results: Result[] = [];
	try {
		for (const profile of PROFILES) {
			console.log(`bench: ${TARGET} ${profile} for ${SECONDS}s with ${CONCURRENCY} customers (${PAYMENT} payments)${RATE ? ` at ${RATE} checkouts/s` : ""} against ${system.base}`);
			const r = await runProfile(system.base, system.watched, profile, system.pgliteProfile);
			console.log(`  confirmed ${r.confirmedPerSecond}/s; POST /orders p50/p95/p99 ${r.postOrdersMs.p50}/${r.postOrdersMs.p95}/${r.postOrdersMs.p99} ms; to CONFIRMED ${r.orderToConfirmedMs.p50}/${r.orderToConfirmedMs.p95}/${r.orderToConfirmedMs.p99} ms; errors ${JSON.stringify(r.errors)}; system CPU avg ${r.cpuPercent.avg}% max ${r.cpuPercent.max}% (of one core); machine probe ${r.machineProbeMs?.p50 ?? "-"} ms`);
			console.log(`  steps of a confirmed order, p50/p95 ms: ${stepsLine(r.stepsMs)}`);
			for (const [code, sample] of Object.entries(r.errorSamples ?? {})) console.log(`  ${code}, e.g.: ${sample}`);
			const { burst } = r as Partial<Awaited<ReturnType<typeof runBurst>>>;
			if (burst) console.log(`  burst: ${JSON.stringify({ ...burst, backlog: burst.backlog.map(b => `${b.second}s:${b.pending}/${b.confirmed}`).join(" ") })}`);
			for (const [name, p] of Object.entries(r.processes)) console.log(`    ${name}: CPU avg ${p.cpuAvg}% max ${p.cpuMax}%, RSS max ${p.rssMaxMb} MB`);
			if ("pglite" in r && r.pglite) {
				console.log(`  PGlite's thread: ${r.pglite.msPerCheckout} ms per confirmed checkout; by message (per checkout, ms per checkout, % of PGlite's time):`);
				for (const e of r.pglite.statements.slice(0, 12)) console.log(`    ${e.perCheckout}× ${e.msPerCheckout} ms ${e.percent}%  ${e.statements.slice(0, 160)}`);
			}
			results.push(r);
		}
	} finally {
		await system.stop();
	}
	mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
	for (const r of results) {
		const name = `${r.target}-${r.profile}${r.rate ? `-at-${r.rate}` : ""}`;
		writeFileSync(path.join(ROOT, `bench/results/${name}.json`), JSON.stringify(r, null, 2) + "\n");
		writeFileSync(path.join(ROOT, `bench/${name}.svg`), chart(r) + "\n");
	}
	if (profDir && results.length > 0) {
		const summaries = profileSummaries(profDir, system.nodes, results[0].window);
		writeFileSync(path.join(ROOT, `bench/results/${TARGET}-cpu-profile.json`), JSON.stringify({ target: TARGET, profile: results[0].profile, date: new Date().toISOString(), nodes: summaries }, null, 2) + "\n");
		if (!process.env.BENCH_KEEP_PROF) rmSync(profDir, { recursive: true, force: true });
	}
	writeReport(ROOT);
	console.log("bench: wrote bench/results/*.json, bench/*.svg and bench/REPORT.md");
}

main().catch(err => {
	console.error(`bench: ${(err as Error).stack ?? err}`);
	process.exit(1);
});
