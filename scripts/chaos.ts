/**
 * `npm run chaos`: a local cluster under checkout load while its nodes are killed (SIGKILL) and
 * restarted (one of them in the middle of the batches of a burst of orders), the Kafka broker is
 * restarted and a consumer node is restarted; some customers pay on the mock gateway's hosted page
 * (its webhooks racing their verification through the restarts); then, once quiet, every
 * guarantee of SPEC section 9 is checked in the databases and in the mock gateway's charges. Prints
 * each invariant with its numbers; exits 1 on any violation.
 *
 * Needs PostgreSQL, Redis, NATS and Kafka (as test:cluster does). CHAOS_SECONDS sets the load's
 * length (default 120), CHAOS_BURST the orders of its burst phase (default 300), CHAOS_LOG_LEVEL
 * the nodes' log level (default error). A failed run keeps its database and writes each node's
 * output to CHAOS_LOG_DIR (default .chaos/<time>), and says where both are.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import path from "node:path";
import { Client } from "pg";
import { Kafka, logLevel } from "kafkajs";
import { startMockGateway } from "../lib/mock-gateway";
import { DEV_WEBHOOK_SECRET } from "../lib/config";
import { eventually, freePort } from "./harness/node";
import { ROOT, missingServers, spawnNode, startCluster, type NodeProcess } from "./harness/cluster";
import { http, tokenFor } from "./harness/http";
import { checkInvariants, chargesWithOrders, eventTraffic, hostedSessionsPaidOnce, kafkaBacklog, publishedNotInKafka, unsettledOrders } from "./invariants";
import { postBurst } from "./burst";

const SECONDS = Number(process.env.CHAOS_SECONDS ?? 120);
const WORKERS = Number(process.env.CHAOS_WORKERS ?? 8);
/** Orders of the burst phase, posted back to back at a tenth of the run. */
const BURST = Number(process.env.CHAOS_BURST ?? 300);
/** How long no event may be handled anywhere before the invariants are checked. */
const QUIET_MS = 6000;
const ADDRESS = { name: "C", line1: "L", city: "C", postalCode: "P", country: "DE" };
const log = (line: string) => console.log(`[chaos ${new Date().toISOString().slice(11, 19)}] ${line}`);
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
const pick = <T>(items: T[]) => items[Math.floor(Math.random() * items.length)];
const kafka = (command: string) => execFileSync("bash", [path.join(ROOT, "scripts/kafka.sh"), command], { stdio: "pipe" });

/** Seconds (epoch) as clock spans, "22:10:16-22:10:24, 22:11:36", to set beside the log's events. */
function spans(seconds: Set<number>): string {
	const clock = (t: number) => new Date(t * 1000).toISOString().slice(11, 19);
	const sorted = [...seconds].sort((a, b) => a - b);
	const out: string[] = [];
	for (let i = 0; i < sorted.length; ) {
		let j = i;
		while (j + 1 < sorted.length && sorted[j + 1] - sorted[j] <= 2) j++;
		out.push(i === j ? clock(sorted[i]) : `${clock(sorted[i])}-${clock(sorted[j])}`);
		i = j + 1;
	}
	return out.join(", ");
}

async function main(): Promise<number> {
	const missing = await missingServers();
	if (missing.length > 0) {
		console.error(`chaos: needs the servers of test:cluster.\n${missing.join("\n")}`);
		return 2;
	}
	const port = await freePort();
	const api = `http://127.0.0.1:${port}`;
	const gateway = await startMockGateway({ webhookUrl: `${api}/api/webhooks/payment-gateway`, webhookSecret: DEV_WEBHOOK_SECRET, webhookRetryBaseMs: 250 });
	const shop = "https://shop.example.com";
	const env = {
		PAYMENT_GATEWAY_URL: gateway.url,
		RATE_LIMIT: "1000000",
		SAGA_STEP_TIMEOUT_MS: "5000",
		RESERVATION_TTL_MS: "15000",
		PAYMENT_TIMEOUT_MS: "1000",
		REFUND_RETRY_BASE_MS: "200",
		PAYMENT_ABANDON_MS: "20000",
		SHUTDOWN_DRAIN_MS: "300",
		EVENT_MAX_ATTEMPTS: "10",
		PAYMENT_REDIRECT_ORIGINS: shop,
		LOG_LEVEL: process.env.CHAOS_LOG_LEVEL ?? "error",
	};
	log(`starting a cluster: gateway, core, two inventory+payment+wallet nodes; load for ${SECONDS}s with ${WORKERS} workers`);
	const cluster = await startCluster(
		[
			{ name: "c-gateway", env: { SERVICES: "gateway", PORT: String(port) } },
			{ name: "c-core", env: { SERVICES: "order,validation,voucher,notification,audit" } },
			{ name: "c-stock-1", env: { SERVICES: "inventory,payment,wallet" } },
			{ name: "c-stock-2", env: { SERVICES: "inventory,payment,wallet" } },
		],
		env,
	);
	const replaced: NodeProcess[] = [];
	let failed = false;
	// A killed node's Kafka consumers keep their partitions until their session times out: the
	// events there wait that long, so quiet is not declared before then.
	let lastKill = Date.now();
	const sessionTimeoutMs = Number(cluster.env.KAFKA_SESSION_TIMEOUT_MS);
	const restart = async (name: string, signal: NodeJS.Signals) => {
		const node = [...replaced, ...cluster.nodes].find(n => n.name === name && n.child.exitCode === null && n.child.signalCode === null)!;
		await node.stop(signal);
		lastKill = Date.now();
		log(`${name} stopped with ${signal}`);
		await sleep(2000);
		const again = await spawnNode(name, { ...cluster.env, ...env, SERVICES: name === "c-core" ? "order,validation,voucher,notification,audit" : "inventory,payment,wallet" });
		replaced.push(again);
		log(`${name} restarted`);
	};

	try {
		await eventually("the gateway to see the services", async () => (await http(api, "GET", "/api/products")).status === 200, 60000, 500);
		const admin = tokenFor("chaos-admin", "admin");
		// Stock and money grow with the run, so that its end still sells (one product stays scarce).
		const scale = Math.max(1, Math.ceil(SECONDS / 40));
		const products: Array<{ id: string; price: number }> = [];
		for (let i = 0; i < 12; i++) {
			const res = await http(api, "POST", "/api/products", { token: admin, body: { sku: `CH-${i}`, name: `Chaos ${i}`, category: "chaos", price: i === 0 ? 12000 : 500 + i * 250, stock: i === 1 ? 40 : 400 * scale } });
			products.push(res.body);
		}
		const users = Array.from({ length: 24 }, (_, i) => `chaos-${i}`);
		// Enough money for the whole run, so that wallet orders keep being paid to the end.
		const seed = 300_000 * scale;
		for (const u of users) await cluster.call("wallet.credit", { userId: u, amount: seed, reason: "TOP_UP", idempotencyKey: `chaos-seed-${u}` });

		const stats = { sent: 0, created: 0, refused: 0, unavailable: 0, failed: 0, paid: 0, hostedPaid: 0, hostedDeclined: 0, cancelled: 0, dispatched: 0 };
		const secondsWith503 = new Set<number>();
		const accepted = new Set<string>();
		const refusals: Record<string, number> = {};
		const unavailable: Record<string, number> = {};
		let running = true;
		/** Tries `request` until the order is past CREATED (409 with status CREATED until then), then hands on its 2xx answer. */
		const untilPayable = async (request: () => Promise<{ status: number; body: any }>, then: (body: any) => unknown) => {
			for (let attempt = 0; attempt < 10; attempt++) {
				await sleep(300);
				const res = await request().catch(() => ({ status: 0, body: undefined as any }));
				if (res.status >= 200 && res.status < 300) return then(res.body);
				if (res.status !== 409 || res.body?.error?.details?.status !== "CREATED") return;
			}
		};
		/** The customer on the gateway's page: sometimes declined first, then pays; the success page verifies half the time (the webhook races it). */
		const payHosted = async (token: string, session: { id: string; url: string }) => {
			const submit = (card: string) =>
				fetch(`${session.url}/pay`, { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: `card=${card}`, redirect: "manual" }).then(r => r.status, () => 0);
			if (Math.random() < 0.2 && (await submit("tok_chargeDeclined")) === 402) stats.hostedDeclined++;
			if ((await submit("tok_visa")) !== 303) return;
			stats.hostedPaid++;
			if (Math.random() < 0.5) await http(api, "POST", `/api/payment-sessions/${session.id}/verify`, { token }).catch(() => undefined);
		};
		const worker = async () => {
			while (running) {
				const user = pick(users);
				const token = tokenFor(user);
				const lines = [...new Set(Array.from({ length: 1 + Math.floor(Math.random() * 3) }, () => pick(products)))];
				const roll = Math.random();
				const payment = roll < 0.45 ? { method: "WALLET" } : roll < 0.75 ? { method: "CARD", cardToken: pick(["tok_visa", "tok_visa", "tok_flaky", "tok_chargeDeclined"]) } : undefined;
				stats.sent++;
				const res = await http(api, "POST", "/api/orders", {
					token,
					headers: { "Idempotency-Key": randomUUID() },
					body: { items: lines.map(p => ({ productId: p.id, quantity: 1 + Math.floor(Math.random() * 2) })), shippingAddress: ADDRESS, ...(payment ? { payment } : {}) },
				}).catch(() => ({ status: 0, body: undefined as any }));
				if (res.status === 201 || res.status === 200) {
					stats.created++;
					accepted.add(res.body.id);
					const id = res.body.id;
					const later = Math.random();
					if (!payment && later < 0.4) {
						// Payable once reserved (PAYMENT_PENDING): until then the answer is 409 ORDER_NOT_PAYABLE.
						await untilPayable(() => http(api, "POST", `/api/orders/${id}/process-payment`, { token, body: { method: "WALLET" } }), () => stats.paid++);
					} else if (!payment && later < 0.75) {
						await untilPayable(
							() => http(api, "POST", `/api/orders/${id}/payment-session`, { token, body: { successUrl: `${shop}/paid/{SESSION_ID}`, cancelUrl: `${shop}/cart` } }),
							session => payHosted(token, session),
						);
					} else if (Math.random() < 0.1) {
						await sleep(200);
						const c = await http(api, "POST", `/api/orders/${id}/cancel`, { token }).catch(() => ({ status: 0 }));
						if (c.status === 200) stats.cancelled++;
					}
				} else if (res.status >= 400 && res.status < 500) {
					stats.refused++;
					refusals[res.body?.error?.code ?? res.status] = (refusals[res.body?.error?.code ?? res.status] ?? 0) + 1;
				} else if (res.status === 503) {
					// A dependency restarting, said as such: a client waits a moment and tries again.
					stats.unavailable++;
					secondsWith503.add(Math.floor(Date.now() / 1000));
					const cause = `${res.body?.error?.code ?? "?"}: ${String(res.body?.error?.message ?? "").replace(/[0-9a-f-]{36}|[\w.-]+-\d+\b/g, "…").slice(0, 80)}`;
					unavailable[cause] = (unavailable[cause] ?? 0) + 1;
					await sleep(200);
				} else stats.failed++;
			}
		};
		const dispatcher = async () => {
			while (running) {
				await sleep(1000);
				for (const id of [...accepted].slice(-30)) {
					const o = await cluster.call<any>("order.get", { orderId: id }).catch(() => undefined);
					if (o?.status === "CONFIRMED" && Math.random() < 0.5) {
						const d = await http(api, "POST", `/api/orders/${id}/dispatch`, { token: admin, body: { courier: "DHL", trackingNumber: `T-${id.slice(0, 6)}` } }).catch(() => ({ status: 0 }));
						if (d.status === 200) stats.dispatched++;
					}
				}
			}
		};
		const load = Promise.all([...Array.from({ length: WORKERS }, worker), dispatcher()]);

		const at = (fraction: number) => sleep(SECONDS * 1000 * fraction);
		await at(0.1);
		// A flash sale on top of the load: orders posted back to back, none waiting for its saga.
		// The consumers then work off a backlog in batches, and a stock node is killed in the middle
		// of them: its uncommitted batch must be redelivered and applied once, elsewhere or later.
		log(`burst of ${BURST} orders`);
		const burst = await postBurst(api, users, products.filter((_, i) => i > 1).map(p => p.id), BURST);
		for (const o of burst.orders) accepted.add(o.id);
		stats.created += burst.orders.length;
		stats.sent += BURST;
		stats.failed += burst.failed;
		log(`burst posted: ${burst.orders.length} accepted, refusals ${JSON.stringify(burst.errors)}; killing a consumer in the middle of its batches`);
		await restart("c-stock-1", "SIGKILL");
		await at(0.2);
		log("restarting the Kafka broker");
		kafka("restart");
		log("Kafka is back");
		await at(0.2);
		await restart("c-core", "SIGTERM");
		await at(0.2);
		await restart("c-stock-2", "SIGKILL");
		await at(0.3);
		running = false;
		await load;
		log(`load done: ${JSON.stringify(stats)}, refusals ${JSON.stringify(refusals)}; 503 answered in ${secondsWith503.size} of ${SECONDS}+ seconds (${spans(secondsWith503)}) ${JSON.stringify(unavailable)}; waiting for quiet`);

		const pg = new Client({ connectionString: cluster.databaseUrl });
		await pg.connect();
		const kafkaClient = new Kafka({ brokers: cluster.env.KAFKA_BROKERS.split(","), logLevel: logLevel.NOTHING });
		const kafkaAdmin = kafkaClient.admin();
		await kafkaAdmin.connect();
		const backlog = () => kafkaBacklog(kafkaAdmin, cluster.env.KAFKA_TOPIC_PREFIX);
		try {
			// Quiet: every order settled, no event waiting in an outbox or behind a consumer group's
			// offsets, no consumer handling anything for QUIET_MS, and no partition still held by a
			// killed consumer (an ended order may still have an event coming: a hosted page paid while
			// it was being cancelled brings payment.authorized, whose refund follows).
			let handledBefore = -1;
			let stillSince = Date.now();
			await eventually(
				"every order to settle and the events to stop",
				async () => {
					const { unpublished, handled } = await eventTraffic(pg);
					if (handled !== handledBefore || unpublished > 0 || (await unsettledOrders(pg)) > 0 || (await backlog()).lag > 0) {
						handledBefore = handled;
						stillSince = Date.now();
						return false;
					}
					return Date.now() - stillSince >= QUIET_MS && Date.now() - lastKill >= sessionTimeoutMs + QUIET_MS;
				},
				180000,
				1000,
			).catch(() => log("not quiet in time; the invariants will say what is left"));
			const charges = chargesWithOrders(gateway.charges(), gateway.sessions());
			const invariants = await checkInvariants(pg, charges, accepted);
			invariants.push(await hostedSessionsPaidOnce(pg, gateway.sessions(), charges));
			invariants.push(await publishedNotInKafka(kafkaClient, kafkaAdmin, pg, cluster.env.KAFKA_TOPIC_PREFIX));
			const left = await backlog();
			invariants.push({ name: "every event consumed", ok: left.lag === 0 && left.unassigned.length === 0, detail: left.detail });
			invariants.unshift({ name: "answers name the problem", ok: !refusals.ROUTE_NOT_FOUND && stats.failed === 0, detail: `refusals ${JSON.stringify(refusals)}, ${stats.failed} without an HTTP answer or with 5xx other than 503` });
			let violations = 0;
			for (const inv of invariants) {
				console.log(`${inv.ok ? "OK  " : "FAIL"} ${inv.name}: ${inv.detail}`);
				if (!inv.ok) violations++;
			}
			console.log(`${invariants.length - violations} passed, ${violations} failed`);
			failed = violations > 0;
			return failed ? 1 : 0;
		} finally {
			await pg.end();
			await kafkaAdmin.disconnect();
		}
	} finally {
		await Promise.all(replaced.map(n => n.stop("SIGKILL")));
		await cluster.stop({ keepDatabase: failed });
		await gateway.close();
		if (failed) keepEvidence(cluster.databaseUrl, [...cluster.nodes, ...replaced]);
	}
}

/** A failed run's evidence: each node's output (the killed ones' too) in a directory, and the kept database named. */
function keepEvidence(databaseUrl: string, nodes: NodeProcess[]): void {
	const dir = process.env.CHAOS_LOG_DIR ?? path.join(ROOT, ".chaos", new Date().toISOString().replace(/[:.]/g, "-"));
	mkdirSync(dir, { recursive: true });
	const seen = new Map<string, number>();
	for (const node of nodes) {
		const n = (seen.get(node.name) ?? 0) + 1;
		seen.set(node.name, n);
		writeFileSync(path.join(dir, `${node.name}-${n}.log`), node.output());
	}
	log(`kept for a look: the database ${databaseUrl} and the nodes' output in ${dir}`);
}

main().then(
	code => process.exit(code),
	err => {
		console.error(`chaos: ${(err as Error).stack ?? err}`);
		process.exit(2);
	},
);
