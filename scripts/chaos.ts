/**
 * `npm run chaos`: a local cluster under checkout load while its nodes are killed (SIGKILL) and
 * restarted, the Kafka broker is restarted and a consumer node is restarted; then, once quiet, every
 * guarantee of SPEC section 9 is checked in the databases and in the mock gateway's charges. Prints
 * each invariant with its numbers; exits 1 on any violation.
 *
 * Needs PostgreSQL, Redis, NATS and Kafka (as test:cluster does). CHAOS_SECONDS sets the load's
 * length (default 120).
 */
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import path from "node:path";
import { Client } from "pg";
import { startMockGateway } from "../lib/mock-gateway";
import { eventually, freePort } from "../test/helpers/node";
import { ROOT, missingServers, spawnNode, startCluster, type NodeProcess } from "../test/helpers/cluster";
import { http, tokenFor } from "../test/helpers/http";

const SECONDS = Number(process.env.CHAOS_SECONDS ?? 120);
const WORKERS = Number(process.env.CHAOS_WORKERS ?? 8);
const ADDRESS = { name: "C", line1: "L", city: "C", postalCode: "P", country: "DE" };
const TERMINAL = ["CONFIRMED", "DISPATCHED", "COMPLETED", "FAILED", "PAYMENT_FAILED", "CANCELLED"];
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

interface Invariant {
	name: string;
	ok: boolean;
	detail: string;
}

async function main(): Promise<number> {
	const missing = await missingServers();
	if (missing.length > 0) {
		console.error(`chaos: needs the servers of test:cluster.\n${missing.join("\n")}`);
		return 2;
	}
	const gateway = await startMockGateway();
	const port = await freePort();
	const api = `http://127.0.0.1:${port}`;
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
		LOG_LEVEL: "error",
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
	const restart = async (name: string, signal: NodeJS.Signals) => {
		const node = [...replaced, ...cluster.nodes].find(n => n.name === name && n.child.exitCode === null && n.child.signalCode === null)!;
		await node.stop(signal);
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

		const stats = { sent: 0, created: 0, refused: 0, unavailable: 0, failed: 0, paid: 0, cancelled: 0, dispatched: 0 };
		const secondsWith503 = new Set<number>();
		const accepted = new Set<string>();
		const refusals: Record<string, number> = {};
		const unavailable: Record<string, number> = {};
		let running = true;
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
					if (!payment && Math.random() < 0.7) {
						// Payable once reserved (PAYMENT_PENDING): until then the answer is 409 ORDER_NOT_PAYABLE.
						for (let attempt = 0; attempt < 10; attempt++) {
							await sleep(300);
							const paid = await http(api, "POST", `/api/orders/${id}/process-payment`, { token, body: { method: "WALLET" } }).catch(() => ({ status: 0, body: undefined as any }));
							if (paid.status === 200) stats.paid++;
							if (paid.status !== 409 || paid.body?.error?.details?.status !== "CREATED") break;
						}
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
		await at(0.2);
		await restart("c-stock-1", "SIGKILL");
		await at(0.2);
		log("restarting the Kafka broker");
		kafka("restart");
		log("Kafka is back");
		await at(0.2);
		await restart("c-core", "SIGTERM");
		await at(0.2);
		await restart("c-stock-2", "SIGKILL");
		await at(0.2);
		running = false;
		await load;
		log(`load done: ${JSON.stringify(stats)}, refusals ${JSON.stringify(refusals)}; 503 answered in ${secondsWith503.size} of ${SECONDS}+ seconds (${spans(secondsWith503)}) ${JSON.stringify(unavailable)}; waiting for quiet`);

		const pg = new Client({ connectionString: cluster.databaseUrl });
		await pg.connect();
		try {
			const settled = async () => {
				const { rows } = await pg.query(`SELECT count(*)::int AS n FROM "order".orders WHERE status NOT IN (${TERMINAL.map(s => `'${s}'`).join(",")}) OR payment_status = 'REFUND_PENDING'`);
				return rows[0].n === 0;
			};
			await eventually("every order to settle", settled, 180000, 1000).catch(() => log("not every order settled in time; the invariants will say which"));
			await sleep(2000);
			const invariants = await checkInvariants(pg, gateway.charges(), accepted);
			invariants.unshift({ name: "answers name the problem", ok: !refusals.ROUTE_NOT_FOUND && stats.failed === 0, detail: `refusals ${JSON.stringify(refusals)}, ${stats.failed} without an HTTP answer or with 5xx other than 503` });
			let violations = 0;
			for (const inv of invariants) {
				console.log(`${inv.ok ? "OK  " : "FAIL"} ${inv.name}: ${inv.detail}`);
				if (!inv.ok) violations++;
			}
			console.log(`${invariants.length - violations} passed, ${violations} failed`);
			return violations === 0 ? 0 : 1;
		} finally {
			await pg.end();
		}
	} finally {
		await Promise.all(replaced.map(n => n.stop("SIGKILL")));
		await cluster.stop();
		await gateway.close();
	}
}

/** SPEC section 9, checked in the tables and the gateway's charges. */
async function checkInvariants(pg: Client, charges: Array<{ idempotencyKey: string; amount: number; refunded: number }>, accepted: Set<string>): Promise<Invariant[]> {
	const q = async (sql: string) => (await pg.query(sql)).rows;
	const out: Invariant[] = [];
	const check = (name: string, ok: boolean, detail: string) => out.push({ name, ok, detail });

	const orders = await q(`SELECT id, status, payment_status, payment_method, total::bigint AS total, items FROM "order".orders`);
	const byStatus: Record<string, number> = {};
	for (const o of orders) byStatus[o.status] = (byStatus[o.status] ?? 0) + 1;
	const open = orders.filter(o => !TERMINAL.includes(o.status));
	const unanswered = orders.filter(o => !accepted.has(o.id)).slice(0, 3).map(o => `${o.id} ${o.status}`);
	check("no lost order", open.length === 0 && [...accepted].every(id => orders.some(o => o.id === id)), `${orders.length} orders (${accepted.size} accepted over HTTP; not answered 2xx, e.g. ${unanswered.join(", ") || "none"}), ${JSON.stringify(byStatus)}, ${open.length} not settled`);
	const refundPending = orders.filter(o => o.payment_status === "REFUND_PENDING");
	const stuck = refundPending.length ? `; ${(await describeOrders(pg, refundPending.slice(0, 5).map(o => o.id), charges)).join("; ")}` : "";
	check("refunds settled", refundPending.length === 0, `${refundPending.length} still REFUND_PENDING, ${orders.filter(o => o.payment_status === "REFUND_FAILED").length} REFUND_FAILED${stuck}`);
	// Every service's dead letters (each service owns a schema with its own table).
	const schemas = await q(`SELECT table_schema AS s FROM information_schema.tables WHERE table_name = 'dead_letters'`);
	const letters = schemas.length ? await q(schemas.map(({ s }) => `SELECT '${s}' AS service, event_name, error FROM "${s}".dead_letters`).join(" UNION ALL ")) : [];
	check("no event dead-lettered", letters.length === 0, `${letters.length} dead letters${letters.length ? ": " + letters.slice(0, 5).map(l => `${l.service} ${l.event_name} (${l.error})`).join("; ") : ""}`);

	const chargesPerOrder = new Map<string, number>();
	for (const c of charges) {
		const id = /order-(.+)-charge/.exec(c.idempotencyKey)?.[1];
		if (id) chargesPerOrder.set(id, (chargesPerOrder.get(id) ?? 0) + 1);
	}
	const doubleCharged = [...chargesPerOrder].filter(([, n]) => n > 1);
	check("no double card charge", doubleCharged.length === 0, `${charges.length} charges for ${chargesPerOrder.size} orders, ${doubleCharged.length} charged twice`);
	const debits = await q(`SELECT order_id, reason, count(*)::int AS n FROM wallet.wallet_transactions WHERE order_id IS NOT NULL GROUP BY order_id, reason`);
	const doubleMoves = debits.filter(d => d.n > 1);
	check("no double wallet debit or refund", doubleMoves.length === 0, `${debits.filter(d => d.reason === "PAYMENT").length} payment debits, ${debits.filter(d => d.reason === "REFUND").length} refunds, ${doubleMoves.length} repeated`);

	// Money taken only for orders that kept it, and given back for the others.
	const kept = new Set(orders.filter(o => ["CONFIRMED", "DISPATCHED", "COMPLETED"].includes(o.status)).map(o => o.id));
	const cardNotKept = [...chargesPerOrder.keys()].filter(id => !kept.has(id) && charges.find(c => c.idempotencyKey === `/charges:order-${id}-charge`)!.refunded === 0);
	const walletPaid = new Set(debits.filter(d => d.reason === "PAYMENT").map(d => d.order_id));
	const walletRefunded = new Set(debits.filter(d => d.reason === "REFUND").map(d => d.order_id));
	const walletNotKept = [...walletPaid].filter(id => !kept.has(id) && !walletRefunded.has(id));
	const keptUnpaid = orders.filter(o => kept.has(o.id) && Number(o.total) > 0 && !walletPaid.has(o.id) && !chargesPerOrder.has(o.id));
	const suspects = [...cardNotKept, ...walletNotKept, ...keptUnpaid.map(o => o.id)].slice(0, 5);
	const described = suspects.length ? (await describeOrders(pg, suspects, charges)).join("; ") : "none";
	check("paid exactly the kept orders", cardNotKept.length + walletNotKept.length + keptUnpaid.length === 0, `${kept.size} kept orders; unrefunded money of ended orders: ${cardNotKept.length} card, ${walletNotKept.length} wallet; kept orders unpaid: ${keptUnpaid.length}; ${described}`);

	// Stock: onHand never below zero; the movement ledger sums to onHand; committed units are the kept orders'.
	const products = await q(`SELECT p.id, p.sku, p.on_hand, p.reserved, COALESCE(sum(m.quantity), 0)::int AS moved,
		COALESCE(sum(-m.quantity) FILTER (WHERE m.kind = 'COMMIT'), 0)::int - COALESCE(sum(m.quantity) FILTER (WHERE m.kind = 'RETURN'), 0)::int AS sold
		FROM inventory.products p LEFT JOIN inventory.stock_movements m ON m.product_id = p.id GROUP BY p.id`);
	const soldByOrders = new Map<string, number>();
	for (const o of orders.filter(o => kept.has(o.id))) for (const l of o.items) soldByOrders.set(l.productId, (soldByOrders.get(l.productId) ?? 0) + l.quantity);
	const reservedOpen = await q(`SELECT l.product_id, sum(l.quantity)::int AS n FROM inventory.reservations r JOIN inventory.reservation_lines l USING (order_id) WHERE r.status = 'RESERVED' GROUP BY 1`);
	const stockBad = products.filter(p => p.on_hand < 0 || p.reserved < 0 || p.moved !== p.on_hand || p.sold !== (soldByOrders.get(p.id) ?? 0) || p.reserved !== (reservedOpen.find(r => r.product_id === p.id)?.n ?? 0));
	check("no oversell, stock conserved", stockBad.length === 0, `${products.length} products, ${[...soldByOrders.values()].reduce((a, b) => a + b, 0)} units sold in kept orders; mismatched: ${stockBad.map(p => `${p.sku} onHand=${p.on_hand} ledger=${p.moved} sold=${p.sold}/${soldByOrders.get(p.id) ?? 0} reserved=${p.reserved}`).join("; ") || "none"}`);

	// Money conserves: each balance is its ledger's sum, and the sum of balances is deposits − debits + refunds.
	const wallets = await q(`SELECT w.user_id, w.balance::bigint AS balance, COALESCE(sum(CASE WHEN t.type = 'CREDIT' THEN t.amount ELSE -t.amount END), 0)::bigint AS ledger
		FROM wallet.wallets w LEFT JOIN wallet.wallet_transactions t USING (user_id) GROUP BY w.user_id, w.balance`);
	const off = wallets.filter(w => Number(w.balance) !== Number(w.ledger) || Number(w.balance) < 0);
	const [totals] = await q(`SELECT COALESCE(sum(amount) FILTER (WHERE reason IN ('TOP_UP', 'ADJUSTMENT') AND type = 'CREDIT'), 0)::bigint AS deposits,
		COALESCE(sum(amount) FILTER (WHERE type = 'DEBIT'), 0)::bigint AS debits, COALESCE(sum(amount) FILTER (WHERE reason = 'REFUND'), 0)::bigint AS refunds FROM wallet.wallet_transactions`);
	const sum = wallets.reduce((s, w) => s + Number(w.balance), 0);
	const expected = Number(totals.deposits) - Number(totals.debits) + Number(totals.refunds);
	check("money conserves", off.length === 0 && sum === expected, `sum of balances ${sum} = deposits ${totals.deposits} − debits ${totals.debits} + refunds ${totals.refunds} (${expected}); ${off.length} wallets off their ledger`);

	// One voucher per qualifying dispatched order, none for others.
	const vouchers = await q(`SELECT order_id, count(*)::int AS n FROM voucher.vouchers GROUP BY order_id`);
	const qualifying = orders.filter(o => ["DISPATCHED", "COMPLETED"].includes(o.status) && Number(o.total) > 10000).map(o => o.id);
	const wrong = vouchers.filter(v => v.n !== 1 || !qualifying.includes(v.order_id));
	const missing = qualifying.filter(id => !vouchers.some(v => v.order_id === id));
	check("vouchers exactly once", wrong.length + missing.length === 0, `${qualifying.length} qualifying dispatched orders, ${vouchers.length} vouchers, ${wrong.length} wrong, ${missing.length} missing`);
	return out;
}

/** One line per order: its status and history, its payment row, its wallet movements and card charge. */
async function describeOrders(pg: Client, ids: string[], charges: Array<{ idempotencyKey: string; amount: number; refunded: number }>): Promise<string[]> {
	const { rows } = await pg.query(
		`SELECT o.id, o.status, o.payment_status, o.failure_code,
			(SELECT string_agg(h.status || coalesce('(' || h.reason || ')', ''), ' > ' ORDER BY h.id) FROM "order".order_status_history h WHERE h.order_id = o.id) AS history,
			p.method, p.status AS payment, p.refund_attempts, p.refund_error, p.reconcile, p.refund_next_at,
			(SELECT string_agg(t.reason, ',' ORDER BY t.created_at) FROM wallet.wallet_transactions t WHERE t.order_id = o.id) AS ledger,
			(SELECT string_agg(e.event_name, ',' ORDER BY e.seq) FROM payment.outbox e WHERE e.aggregate_key = o.id::text) AS payment_events
		 FROM "order".orders o LEFT JOIN payment.payments p ON p.order_id = o.id WHERE o.id = ANY($1::uuid[])`,
		[ids],
	);
	return rows.map(r => {
		const charge = charges.find(c => c.idempotencyKey.includes(`order-${r.id}-charge`));
		return `${r.id} ${r.status}/${r.payment_status} ${r.failure_code ?? ""} [${r.history}] payment ${r.method} ${r.payment} (tries ${r.refund_attempts}, next ${r.refund_next_at?.toISOString?.() ?? "-"}, reconcile ${r.reconcile}, error ${r.refund_error ?? "-"}) events [${r.payment_events ?? ""}] ledger [${r.ledger ?? ""}] charge ${charge ? `${charge.amount} refunded ${charge.refunded}` : "none"}`;
	});
}

main().then(
	code => process.exit(code),
	err => {
		console.error(`chaos: ${(err as Error).stack ?? err}`);
		process.exit(2);
	},
);
