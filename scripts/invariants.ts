/**
 * SPEC section 9 checked in a cluster's databases and the mock card gateway's charges: no lost
 * order, refunds settled, nothing dead-lettered, no double charge or debit, money taken exactly for
 * the kept orders, no oversell with stock conserved, money conserved, vouchers exactly once. Used by
 * the chaos run and the cluster suite's burst test.
 */
import type { Client } from "pg";
import { AssignerProtocol, type Admin, type Kafka } from "kafkajs";
import { partitionLag } from "../lib/runtime";

export const TERMINAL = ["CONFIRMED", "DISPATCHED", "COMPLETED", "FAILED", "PAYMENT_FAILED", "CANCELLED"];

export interface Invariant {
	name: string;
	ok: boolean;
	detail: string;
}

/** A gateway charge; a hosted session's names its order by `orderId` (the others by their key). */
export type Charge = { idempotencyKey: string; amount: number; refunded: number; orderId?: string };
/** The order a charge was for. */
const orderOf = (c: Charge) => c.orderId ?? /order-(.+)-charge/.exec(c.idempotencyKey)?.[1];

/** Orders still in the saga, or waiting for a refund. */
export async function unsettledOrders(pg: Client): Promise<number> {
	const { rows } = await pg.query(`SELECT count(*)::int AS n FROM "order".orders WHERE status <> ALL($1::text[]) OR payment_status = 'REFUND_PENDING'`, [TERMINAL]);
	return rows[0].n;
}

/** Every service's tables of these names (each service owns a schema), quoted; one query, as a pg Client runs one at a time. */
const tablesNamed = async (pg: Client, ...names: string[]) =>
	(await pg.query<{ s: string; t: string }>(`SELECT table_schema AS s, table_name AS t FROM information_schema.tables WHERE table_name = ANY($1::text[])`, [names])).rows.map(
		r => `"${r.s.replace(/"/g, '""')}".${r.t}`,
	);

/**
 * Every service's events still in flight: written and not yet published, and handled so far (inbox
 * records, and the rows of the consumers that are their own inboxes: the audit log, the notifications).
 */
export async function eventTraffic(pg: Client): Promise<{ unpublished: number; handled: number }> {
	const count = async (sql: string) => (sql ? Number((await pg.query<{ n: string }>(sql)).rows[0].n) : 0);
	const unpublished = (await tablesNamed(pg, "outbox")).map(t => `(SELECT count(*) FROM ${t} WHERE published_at IS NULL)`).join(" + ");
	const handled = (await tablesNamed(pg, "processed_events", "audit_log", "notifications")).map(t => `(SELECT count(*) FROM ${t})`).join(" + ");
	return { unpublished: await count(unpublished && `SELECT ${unpublished} AS n`), handled: await count(handled && `SELECT ${handled} AS n`) };
}

/**
 * What the consumer groups on a cluster's topics (`prefix`) have not consumed yet: per group, the
 * events behind its committed offsets, and the partitions of topics it subscribes to that none of
 * its live members subscribed to them holds (kafkajs drops from a member's assignment the topics it
 * did not subscribe to: such a partition is consumed by no one until the next rebalance).
 */
export async function kafkaBacklog(admin: Admin, prefix: string): Promise<{ lag: number; unassigned: string[]; detail: string }> {
	const { groups } = await admin.listGroups();
	const described = groups.length ? (await admin.describeGroups(groups.map(g => g.groupId))).groups : [];
	let lag = 0;
	const unassigned: string[] = [];
	const behind: string[] = [];
	for (const group of described) {
		const members = group.members.map(m => ({
			topics: AssignerProtocol.MemberMetadata.decode(m.memberMetadata)?.topics ?? [],
			assignment: AssignerProtocol.MemberAssignment.decode(m.memberAssignment)?.assignment ?? {},
		}));
		const topics = [...new Set(members.flatMap(m => m.topics))].filter(t => t.startsWith(prefix));
		if (topics.length === 0) continue;
		const committed = await admin.fetchOffsets({ groupId: group.groupId, topics });
		for (const topic of topics) {
			const held = new Set(members.filter(m => m.topics.includes(topic)).flatMap(m => m.assignment[topic] ?? []));
			for (const end of await admin.fetchTopicOffsets(topic)) {
				const n = partitionLag(committed, topic, end).lag;
				const where = `${group.groupId} ${topic.slice(prefix.length)}[${end.partition}]`;
				if (n > 0) behind.push(`${where} ${n}`);
				if (!held.has(end.partition)) unassigned.push(where);
				lag += n;
			}
		}
	}
	return { lag, unassigned, detail: `${lag} events not consumed${behind.length ? ` (${behind.slice(0, 5).join(", ")})` : ""}; partitions held by no member: ${unassigned.slice(0, 5).join(", ") || "none"}` };
}

/**
 * Events every outbox says it published that are not in their Kafka topic: every record of the
 * cluster's topics (`prefix`) is read back by a throw-away consumer group (the broker acknowledged
 * them all, so each must be there).
 */
export async function publishedNotInKafka(kafka: Kafka, admin: Admin, pg: Client, prefix: string): Promise<Invariant> {
	const topics = (await admin.listTopics()).filter(t => t.startsWith(prefix) && !t.endsWith(".dlq"));
	let total = 0;
	for (const topic of topics) for (const end of await admin.fetchTopicOffsets(topic)) total += Number(end.high) - Number(end.low);
	const inKafka = new Set<string>();
	let read = 0;
	const consumer = kafka.consumer({ groupId: `invariants-${Date.now()}-${Math.random()}` });
	await consumer.connect();
	try {
		await consumer.subscribe({ topics, fromBeginning: true });
		await new Promise<void>((resolve, reject) => {
			const timer = setTimeout(() => reject(new Error(`read ${read} of ${total} records in 60 s`)), 60000);
			void consumer.run({
				eachBatch: async ({ batch }) => {
					for (const m of batch.messages) inKafka.add(String(m.headers?.eventId ?? ""));
					read += batch.messages.length;
					if (read >= total) {
						clearTimeout(timer);
						resolve();
					}
				},
			});
			if (total === 0) resolve();
		});
	} finally {
		await consumer.disconnect();
	}
	const published = (await tablesNamed(pg, "outbox")).map(t => `SELECT event_id::text AS id, event_name FROM ${t} WHERE published_at IS NOT NULL`);
	const rows = published.length ? (await pg.query<{ id: string; event_name: string }>(published.join(" UNION ALL "))).rows : [];
	const missing = rows.filter(r => !inKafka.has(r.id));
	return {
		name: "every published event in Kafka",
		ok: missing.length === 0,
		detail: `${rows.length} events published, ${total} records in ${topics.length} topics; missing: ${missing.length}${missing.length ? ` (${missing.slice(0, 5).map(r => `${r.event_name} ${r.id}`).join(", ")})` : ""}`,
	};
}

/** The gateway's charges, those made on a hosted page naming their session's order. */
export function chargesWithOrders(charges: Array<Charge & { sessionId?: string }>, sessions: Array<{ id: string; client_reference_id: string | null }>) {
	const orderOfSession = new Map(sessions.map(s => [s.id, s.client_reference_id ?? undefined]));
	return charges.map(c => ({ ...c, orderId: c.sessionId ? orderOfSession.get(c.sessionId) : undefined }));
}

/** Every completed hosted session charged once and recorded as its order's one payment. */
export async function hostedSessionsPaidOnce(pg: Client, sessions: Array<{ id: string; status: string }>, charges: Array<{ sessionId?: string }>): Promise<Invariant> {
	const completed = sessions.filter(s => s.status === "complete");
	const paidOnce = completed.filter(s => charges.filter(c => c.sessionId === s.id).length === 1);
	const { rows } = await pg.query(`SELECT count(*)::int AS n FROM payment.payments p JOIN payment.payment_sessions s ON s.order_id = p.order_id AND s.status = 'complete'`);
	return {
		name: "hosted sessions paid once",
		ok: paidOnce.length === completed.length && rows[0].n === completed.length,
		detail: `${sessions.length} sessions, ${completed.length} completed: ${paidOnce.length} with exactly one charge, ${rows[0].n} recorded as their order's payment`,
	};
}

/** SPEC section 9, checked in the tables and the gateway's charges. */
export async function checkInvariants(pg: Client, charges: Charge[], accepted: Set<string>): Promise<Invariant[]> {
	const q = async (sql: string) => (await pg.query(sql)).rows;
	const out: Invariant[] = [];
	const check = (name: string, ok: boolean, detail: string) => out.push({ name, ok, detail });

	const orders = await q(`SELECT id, status, payment_status, payment_method, total::bigint AS total, items, failure_code FROM "order".orders`);
	const byStatus: Record<string, number> = {};
	for (const o of orders) byStatus[o.status] = (byStatus[o.status] ?? 0) + 1;
	// Why the orders that failed did: what a fault cost, and whether it cost what it should.
	const failedBy: Record<string, number> = {};
	for (const o of orders.filter(o => o.status === "FAILED" || o.status === "PAYMENT_FAILED")) {
		const key = `${o.status}:${o.failure_code}`;
		failedBy[key] = (failedBy[key] ?? 0) + 1;
	}
	const open = orders.filter(o => !TERMINAL.includes(o.status));
	const unanswered = orders.filter(o => !accepted.has(o.id)).slice(0, 3).map(o => `${o.id} ${o.status}`);
	check("no lost order", open.length === 0 && [...accepted].every(id => orders.some(o => o.id === id)), `${orders.length} orders (${accepted.size} accepted over HTTP; not answered 2xx, e.g. ${unanswered.join(", ") || "none"}), ${JSON.stringify(byStatus)}, failed by code ${JSON.stringify(failedBy)}, ${open.length} not settled`);
	const refundPending = orders.filter(o => o.payment_status === "REFUND_PENDING");
	const stuck = refundPending.length ? `; ${(await describeOrders(pg, refundPending.slice(0, 5).map(o => o.id), charges)).join("; ")}` : "";
	check("refunds settled", refundPending.length === 0, `${refundPending.length} still REFUND_PENDING, ${orders.filter(o => o.payment_status === "REFUND_FAILED").length} REFUND_FAILED${stuck}`);
	// Every service's dead letters (each service owns a schema with its own table).
	const schemas = await q(`SELECT table_schema AS s FROM information_schema.tables WHERE table_name = 'dead_letters'`);
	const letters = schemas.length ? await q(schemas.map(({ s }) => `SELECT '${s}' AS service, event_name, error FROM "${s}".dead_letters`).join(" UNION ALL ")) : [];
	check("no event dead-lettered", letters.length === 0, `${letters.length} dead letters${letters.length ? ": " + letters.slice(0, 5).map(l => `${l.service} ${l.event_name} (${l.error})`).join("; ") : ""}`);

	const chargesPerOrder = new Map<string, number>();
	for (const c of charges) {
		const id = orderOf(c);
		if (id) chargesPerOrder.set(id, (chargesPerOrder.get(id) ?? 0) + 1);
	}
	const doubleCharged = [...chargesPerOrder].filter(([, n]) => n > 1);
	const hosted = charges.filter(c => c.orderId).length;
	check("no double card charge", doubleCharged.length === 0, `${charges.length} charges (${hosted} on hosted pages) for ${chargesPerOrder.size} orders, ${doubleCharged.length} charged twice`);
	const debits = await q(`SELECT order_id, reason, count(*)::int AS n FROM wallet.wallet_transactions WHERE order_id IS NOT NULL GROUP BY order_id, reason`);
	const doubleMoves = debits.filter(d => d.n > 1);
	check("no double wallet debit or refund", doubleMoves.length === 0, `${debits.filter(d => d.reason === "PAYMENT").length} payment debits, ${debits.filter(d => d.reason === "REFUND").length} refunds, ${doubleMoves.length} repeated`);

	// Money taken only for orders that kept it, and given back for the others.
	const kept = new Set(orders.filter(o => ["CONFIRMED", "DISPATCHED", "COMPLETED"].includes(o.status)).map(o => o.id));
	const cardNotKept = [...chargesPerOrder.keys()].filter(id => !kept.has(id) && charges.find(c => orderOf(c) === id)!.refunded === 0);
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

/** One line per order: its status and history, its payment row and its events (unpublished? handled by the order?), its wallet movements and card charge. */
async function describeOrders(pg: Client, ids: string[], charges: Charge[]): Promise<string[]> {
	const { rows } = await pg.query(
		`SELECT o.id, o.status, o.payment_status, o.failure_code,
			(SELECT string_agg(h.status || coalesce('(' || h.reason || ')', ''), ' > ' ORDER BY h.id) FROM "order".order_status_history h WHERE h.order_id = o.id) AS history,
			p.method, p.status AS payment, p.refund_attempts, p.refund_error, p.reconcile, p.refund_next_at,
			(SELECT string_agg(t.reason, ',' ORDER BY t.created_at) FROM wallet.wallet_transactions t WHERE t.order_id = o.id) AS ledger,
			(SELECT string_agg(e.event_name || CASE WHEN e.published_at IS NULL THEN ' unpublished' ELSE '' END
			   || CASE WHEN EXISTS (SELECT 1 FROM "order".processed_events pe WHERE pe.event_id = e.event_id) THEN ' handled by order' ELSE '' END, ',' ORDER BY e.seq)
			 FROM payment.outbox e WHERE e.aggregate_key = o.id::text) AS payment_events
		 FROM "order".orders o LEFT JOIN payment.payments p ON p.order_id = o.id WHERE o.id = ANY($1::uuid[])`,
		[ids],
	);
	return rows.map(r => {
		const charge = charges.find(c => orderOf(c) === r.id);
		return `${r.id} ${r.status}/${r.payment_status} ${r.failure_code ?? ""} [${r.history}] payment ${r.method} ${r.payment} (tries ${r.refund_attempts}, next ${r.refund_next_at?.toISOString?.() ?? "-"}, reconcile ${r.reconcile}, error ${r.refund_error ?? "-"}) events [${r.payment_events ?? ""}] ledger [${r.ledger ?? ""}] charge ${charge ? `${charge.amount} refunded ${charge.refunded}` : "none"}`;
	});
}

