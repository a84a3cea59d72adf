/**
 * `npm run bench`: load against a running system, in three profiles, with a report.
 *
 *   checkout  N customers each: validate the cart → order (WALLET or CARD) → poll until CONFIRMED
 *   shop      a storefront mix: browse 10, product page 5, validate cart 3, checkout 1
 *   hot       every order for one product with limited stock
 *
 * By default it starts the embedded default (`bin/node.ts`, fresh DATA_DIR) and measures that
 * process's CPU and memory; BENCH_URL points it at a running gateway instead (with BENCH_PID, the
 * process to measure). BENCH_PROFILES (checkout,shop,hot), BENCH_SECONDS (20), BENCH_CONCURRENCY
 * (32). Writes bench/results/<profile>.json, bench/<profile>.svg and bench/REPORT.md.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { http, tokenFor } from "../test/helpers/http";
import { eventually, freePort } from "../test/helpers/node";

const ROOT = path.resolve(__dirname, "..");
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const PROFILES = (process.env.BENCH_PROFILES ?? "checkout,shop,hot").split(",");
const ADDRESS = { name: "B", line1: "L", city: "C", postalCode: "P", country: "DE" };
const ADMIN = tokenFor("bench-admin", "admin");

const percentile = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : 0);
const summarize = (values: number[]) => {
	const s = [...values].sort((a, b) => a - b);
	return { count: s.length, p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99) };
};

/** CPU (percent of one core) and RSS of a process, from /proc. */
function sampler(pid: number) {
	const ticks = 100;
	const read = () => {
		const stat = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
		return { cpu: (Number(stat[11]) + Number(stat[12])) / ticks, rssMb: (Number(stat[21]) * 4096) / 1048576 };
	};
	let last = read();
	let lastAt = Date.now();
	return () => {
		const now = read();
		const at = Date.now();
		const cpuPercent = ((now.cpu - last.cpu) / ((at - lastAt) / 1000)) * 100;
		last = now;
		lastAt = at;
		return { cpuPercent: Math.round(cpuPercent), rssMb: Math.round(now.rssMb) };
	};
}

interface Sample {
	second: number;
	confirmed: number;
	orderP95: number;
	cpuPercent: number;
	rssMb: number;
}

async function runProfile(base: string, pid: number | undefined, profile: string) {
	const products: Array<{ id: string; price: number }> = [];
	const count = profile === "hot" ? 1 : 1000;
	for (let i = 0; i < count; i += 50) {
		const batch = await Promise.all(
			Array.from({ length: Math.min(50, count - i) }, (_, j) =>
				http(base, "POST", "/api/products", { token: ADMIN, body: { sku: `B-${profile}-${i + j}-${randomUUID().slice(0, 4)}`, name: `Bench ${i + j}`, category: `c${(i + j) % 20}`, price: 100 + ((i + j) % 50) * 10, stock: profile === "hot" ? 200 : 100000 } }),
			),
		);
		products.push(...batch.map(r => r.body));
	}
	const users = Array.from({ length: CONCURRENCY }, (_, i) => `bench-${profile}-${i}`);
	for (const u of users) await http(base, "POST", "/api/wallet/top-ups", { token: tokenFor(u), body: { amount: 5_000_000, cardToken: "tok_visa" }, headers: { "Idempotency-Key": `seed-${u}` } });

	const orderLatency: number[] = [];
	const confirmLatency: number[] = [];
	const errors: Record<string, number> = {};
	const perSecond = new Map<number, { confirmed: number; latencies: number[] }>();
	const start = Date.now();
	const second = () => Math.floor((Date.now() - start) / 1000);
	const bucket = () => perSecond.get(second()) ?? (perSecond.set(second(), { confirmed: 0, latencies: [] }), perSecond.get(second())!);
	const fail = (code: string) => (errors[code] = (errors[code] ?? 0) + 1);
	let running = true;

	const checkout = async (token: string, product: { id: string; price: number }, payment: Record<string, string>) => {
		await http(base, "POST", "/api/cart/validate", { token, body: { items: [{ productId: product.id, quantity: 1 }] } });
		const t0 = Date.now();
		const res = await http(base, "POST", "/api/orders", { token, body: { items: [{ productId: product.id, quantity: 1 }], shippingAddress: ADDRESS, payment } });
		const took = Date.now() - t0;
		orderLatency.push(took);
		bucket().latencies.push(took);
		if (res.status !== 201) return fail(res.body?.error?.code ?? String(res.status));
		for (;;) {
			await new Promise(r => setTimeout(r, 20));
			const o = await http(base, "GET", `/api/orders/${res.body.id}`, { token });
			if (o.body.status === "CONFIRMED") {
				confirmLatency.push(Date.now() - t0);
				bucket().confirmed++;
				return;
			}
			if (["FAILED", "PAYMENT_FAILED", "CANCELLED"].includes(o.body.status)) return fail(o.body.failureCode ?? o.body.status);
			if (!running && Date.now() - t0 > 30000) return fail("NOT_CONFIRMED_IN_30S");
		}
	};
	const worker = async (user: string, i: number) => {
		const token = tokenFor(user);
		let n = 0;
		while (running) {
			n++;
			const product = products[Math.floor(Math.random() * products.length)];
			const payment: Record<string, string> = (i + n) % 2 ? { method: "WALLET" } : { method: "CARD", cardToken: "tok_visa" };
			if (profile !== "shop" || n % 19 === 0) {
				await checkout(token, product, payment);
			} else {
				const kind = n % 19;
				const res =
					kind < 11
						? await http(base, "GET", `/api/products?category=c${n % 20}&sort=price&page=${1 + (n % 3)}`)
						: kind < 16
							? await http(base, "GET", `/api/products/${product.id}`)
							: await http(base, "POST", "/api/cart/validate", { token, body: { items: [{ productId: product.id, quantity: 1 }] } });
				if (res.status >= 400) fail(res.body?.error?.code ?? String(res.status));
			}
		}
	};
	const sample = pid ? sampler(pid) : undefined;
	const samples: Sample[] = [];
	const ticker = setInterval(() => {
		const s = second() - 1;
		const b = perSecond.get(s);
		const usage = sample?.() ?? { cpuPercent: 0, rssMb: 0 };
		samples.push({ second: s, confirmed: b?.confirmed ?? 0, orderP95: summarize(b?.latencies ?? []).p95, ...usage });
	}, 1000);
	const load = Promise.all(users.map(worker));
	await new Promise(r => setTimeout(r, SECONDS * 1000));
	running = false;
	await load;
	clearInterval(ticker);
	const elapsed = (Date.now() - start) / 1000;
	return {
		profile,
		seconds: Math.round(elapsed),
		concurrency: CONCURRENCY,
		confirmedPerSecond: Math.round((confirmLatency.length / elapsed) * 10) / 10,
		confirmed: confirmLatency.length,
		postOrdersMs: summarize(orderLatency),
		orderToConfirmedMs: summarize(confirmLatency),
		errors,
		cpuPercent: { avg: Math.round(samples.reduce((s, x) => s + x.cpuPercent, 0) / Math.max(1, samples.length)), max: Math.max(0, ...samples.map(x => x.cpuPercent)) },
		rssMb: { max: Math.max(0, ...samples.map(x => x.rssMb)) },
		samples,
	};
}

/** Throughput and POST /orders p95 per second as a small SVG line chart. */
function chart(result: Awaited<ReturnType<typeof runProfile>>): string {
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
<text x="${pad}" y="16">${result.profile}: confirmed checkouts/s (blue, max ${maxT}) and POST /orders p95 ms (red, max ${maxL}) per second</text>
<line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}" stroke="#999"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${h - pad}" stroke="#999"/>
<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="${line(s => s.confirmed, maxT)}"/>
<polyline fill="none" stroke="#d1242f" stroke-width="1.5" points="${line(s => s.orderP95, maxL)}"/>
<text x="${w - pad}" y="${h - 10}" text-anchor="end">${xs.length} s</text>
</svg>`;
}

async function main() {
	let base = process.env.BENCH_URL;
	let pid = process.env.BENCH_PID ? Number(process.env.BENCH_PID) : undefined;
	let stop = async () => undefined as unknown;
	if (!base) {
		const port = await freePort();
		const dataDir = mkdtempSync(path.join(tmpdir(), "bench-"));
		const child = spawn(process.execPath, ["--import", "tsx", "bin/node.ts"], {
			cwd: ROOT,
			env: { ...process.env, NODE_OPTIONS: "", DATA_DIR: dataDir, PORT: String(port), METRICS_PORT: "0", LOG_LEVEL: "warn", RATE_LIMIT: "1000000" },
			stdio: ["ignore", "pipe", "pipe"],
		});
		let out = "";
		child.stdout!.on("data", d => (out += d));
		child.stderr!.on("data", d => (out += d));
		base = `http://127.0.0.1:${port}`;
		pid = child.pid;
		await eventually("the embedded node", async () => out.includes("is up"), 60000).catch(err => {
			child.kill("SIGKILL");
			throw new Error(`${(err as Error).message}:\n${out}`);
		});
		stop = async () => {
			child.kill("SIGTERM");
			await new Promise(r => child.once("exit", r));
			rmSync(dataDir, { recursive: true, force: true });
		};
	}
	const results = [];
	try {
		for (const profile of PROFILES) {
			console.log(`bench: ${profile} for ${SECONDS}s with ${CONCURRENCY} customers against ${base}`);
			const r = await runProfile(base, pid, profile);
			console.log(`  confirmed ${r.confirmedPerSecond}/s; POST /orders p50/p95/p99 ${r.postOrdersMs.p50}/${r.postOrdersMs.p95}/${r.postOrdersMs.p99} ms; to CONFIRMED ${r.orderToConfirmedMs.p50}/${r.orderToConfirmedMs.p95}/${r.orderToConfirmedMs.p99} ms; errors ${JSON.stringify(r.errors)}; CPU avg ${r.cpuPercent.avg}% max ${r.cpuPercent.max}%; RSS max ${r.rssMb.max} MB`);
			results.push(r);
		}
	} finally {
		await stop();
	}
	mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
	const rows = results.map(
		r => `| ${r.profile} | ${r.confirmedPerSecond} | ${r.postOrdersMs.p50} / ${r.postOrdersMs.p95} / ${r.postOrdersMs.p99} | ${r.orderToConfirmedMs.p50} / ${r.orderToConfirmedMs.p95} / ${r.orderToConfirmedMs.p99} | ${Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(", ") || "none"} | ${r.cpuPercent.avg} / ${r.cpuPercent.max} | ${r.rssMb.max} |`,
	);
	for (const r of results) {
		writeFileSync(path.join(ROOT, `bench/results/${r.profile}.json`), JSON.stringify(r, null, 2) + "\n");
		writeFileSync(path.join(ROOT, `bench/${r.profile}.svg`), chart(r) + "\n");
	}
	writeFileSync(
		path.join(ROOT, "bench/REPORT.md"),
		`# Benchmark report

Generated by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)} against ${process.env.BENCH_URL ? process.env.BENCH_URL : "the embedded default (one process, PGlite)"}, ${CONCURRENCY} concurrent customers, ${SECONDS} s per profile, on this 2-core machine (the load generator shares it).

| profile | confirmed checkouts/s | POST /orders p50 / p95 / p99 ms | order → CONFIRMED p50 / p95 / p99 ms | errors | CPU % of one core avg / max (system process) | RSS max MB |
|---|---|---|---|---|---|---|
${rows.join("\n")}

${results.map(r => `![${r.profile}](${r.profile}.svg)`).join("\n")}

Not measured yet (issue 6): the local cluster with Kafka, the pgbench floor, CPU profiles and the before/after of optimisations.
`,
	);
	console.log("bench: wrote bench/REPORT.md, bench/results/*.json and bench/*.svg");
}

main().catch(err => {
	console.error(`bench: ${(err as Error).stack ?? err}`);
	process.exit(1);
});
