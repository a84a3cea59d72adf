/**
 * `npm run bench:sql`: SQL statements and transactions per checkout, counted on an embedded node
 * (in-memory PGlite) for wallet and card orders followed to CONFIRMED: placed one after another
 * (a checkout alone), 200 at once (a burst: consumers then handle events in batches, and the
 * count is amortized over the batch), and by 32 customers each placing its next order once the last
 * is confirmed (the closed-loop benchmark's saturation), the last also again once BENCH_SQL_PRELOAD
 * (4000) more orders are in and a checkpoint has just passed (the WAL's full-page images). Unlike throughput on a shared 2-core machine, the count is the same from run to run:
 * it shows what an optimisation removed. Writes bench/results/sql-per-checkout.json.
 */
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { runtimeOf } from "../lib/runtime";
import { eventually, startTestNode } from "./harness/node";
import { watchStatements } from "./harness/statements";
import { sqlQuery } from "../lib/sql";
import { writeReport } from "./bench-report";

const ROOT = path.resolve(__dirname, "..");
const ORDERS = 20;
const BURST = 200;
const CUSTOMERS = 32;
const ROUNDS = 5;
/** Orders placed before the checkpoint of the last count (BENCH_SQL_PRELOAD). */
const PRELOAD = Number(process.env.BENCH_SQL_PRELOAD ?? 4000);

/** A statement's shape: its first words and table, values left out. */
const shapeOf = (sql: string) =>
	sql
		.replace(/\s+/g, " ")
		.trim()
		.replace(/^(WITH \w+ AS \(.*?\) )?(SELECT|INSERT INTO|UPDATE|DELETE FROM)\s.*?("\w+"\.(?:"\w+"|\w+)).*$/i, (_, _w, verb, table) => `${verb.toUpperCase()} ${table.replace(/"/g, "")}`)
		.slice(0, 60);

async function main(): Promise<void> {
	// Background work (relay sweeps, the watchdog, vacuuming) is pushed out of the way: only the checkouts count.
	const node = await startTestNode({ DATA_DIR: "memory://", OUTBOX_POLL_MS: "60000", SAGA_STEP_TIMEOUT_MS: "600000", EMBEDDED_VACUUM_MS: "3600000", LOG_LEVEL: "error" });
	const call = <T = any>(action: string, params: Record<string, unknown>) => node.broker.call<T, Record<string, unknown>>(action, params);
	const { sequelize } = await runtimeOf(node.broker).database();
	const product = await call<{ id: string }>("inventory.create", { sku: "SQL-1", name: "Counted", category: "c", price: 100, stock: 100000 });
	await call("wallet.credit", { userId: "counter", amount: 10_000_000, reason: "TOP_UP", idempotencyKey: randomUUID() });

	const shapes = new Map<string, number>();
	let messages = 0;
	let counting = false;
	// The counter's own polling (below) is not the checkout's: its statements carry a mark and are left out.
	const POLL = "/* bench:sql poll */";
	watchStatements((sql, opensMessage) => {
		if (!counting || sql.startsWith(POLL)) return;
		if (opensMessage) messages++;
		const shape = sql.startsWith("PREPARE ") ? "PREPARE" : shapeOf(sql);
		shapes.set(shape, (shapes.get(shape) ?? 0) + 1);
	});
	const status = async (id: string) => (await sqlQuery<{ status: string }>(sequelize, `${POLL} SELECT status FROM "order".orders WHERE id = :id`, { id }))[0].status;
	const place = (method: string) =>
		call<{ id: string }>("order.create", {
			userId: "counter",
			items: [{ productId: product.id, quantity: 1 }],
			shippingAddress: { name: "C", line1: "L", city: "C", postalCode: "P", country: "DE" },
			customer: { name: "Counter", email: "counter@example.com" },
			payment: method === "WALLET" ? { method } : { method, cardToken: "tok_visa" },
		});
	const confirmed = (id: string) => eventually("CONFIRMED", async () => (await status(id)) === "CONFIRMED", 120000, 20);
	// The WAL the database wrote: what PGlite's thread spends its file writes on (bench/ANALYSIS.md, the embedded WAL).
	const wal = async () => {
		await sqlQuery(sequelize, `${POLL} SELECT pg_stat_force_next_flush()`);
		const [row] = await sqlQuery<{ bytes: string; fpi: string }>(sequelize, `${POLL} SELECT wal_bytes AS bytes, wal_fpi AS fpi FROM pg_stat_wal`);
		return { bytes: Number(row.bytes), fpi: Number(row.fpi) };
	};
	const results: Record<string, { statements: number; transactions: number; roundTrips: number; walKb: number; fullPageImages: number }> = {};
	const count = async (label: string, orders: number, run: () => Promise<void>) => {
		shapes.clear();
		messages = 0;
		const walBefore = await wal();
		counting = true;
		await run();
		counting = false;
		const walAfter = await wal();
		const total = [...shapes.values()].reduce((a, b) => a + b, 0);
		const perOrder = (n: number) => Math.round((n / orders) * 10) / 10;
		results[label] = {
			statements: perOrder(total),
			transactions: perOrder(shapes.get("BEGIN") ?? 0),
			roundTrips: perOrder(messages),
			walKb: perOrder((walAfter.bytes - walBefore.bytes) / 1024),
			fullPageImages: perOrder(walAfter.fpi - walBefore.fpi),
		};
		console.log(
			`${label}: ${results[label].statements} statements in ${results[label].transactions} transactions and ${results[label].roundTrips} round trips per checkout; ${results[label].walKb} KB of WAL (${results[label].fullPageImages} full-page images)`,
		);
		for (const [shape, n] of [...shapes].sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log(`  ${(n / orders).toFixed(1).padStart(5)}  ${shape}`);
	};
	for (const method of ["WALLET", "CARD"]) {
		await count(method, ORDERS, async () => {
			for (let i = 0; i < ORDERS; i++) {
				await confirmed((await place(method)).id);
				await new Promise(r => setTimeout(r, 150)); // the events after CONFIRMED (audit, notification, voucher)
			}
		});
	}
	await count("WALLET_BURST", BURST, async () => {
		const orders = await Promise.all(Array.from({ length: BURST }, () => place("WALLET")));
		for (const o of orders) await confirmed(o.id);
		await new Promise(r => setTimeout(r, 1000));
	});
	// Saturation as the closed-loop benchmark makes it: 32 customers, each placing its next order once the last is confirmed.
	const closedLoop = async () => {
		await Promise.all(
			Array.from({ length: CUSTOMERS }, async () => {
				for (let i = 0; i < ROUNDS; i++) await confirmed((await place("WALLET")).id);
			}),
		);
		await new Promise(r => setTimeout(r, 1000));
	};
	await count("WALLET_32_CUSTOMERS", CUSTOMERS * ROUNDS, closedLoop);
	// A node that has run for a while: its indexes hold many keys, and a checkpoint has just passed,
	// so the first change of each page after it writes the whole page to the WAL (full-page images).
	for (let placed = 0; placed < PRELOAD; placed += BURST) {
		const orders = await Promise.all(Array.from({ length: Math.min(BURST, PRELOAD - placed) }, () => place("WALLET")));
		for (const o of orders) await confirmed(o.id);
	}
	await new Promise(r => setTimeout(r, 1000));
	await sqlQuery(sequelize, `${POLL} CHECKPOINT`);
	await count(`WALLET_32_CUSTOMERS_AFTER_CHECKPOINT`, CUSTOMERS * ROUNDS, closedLoop);
	await node.stop();
	writeFileSync(path.join(ROOT, "bench/results/sql-per-checkout.json"), JSON.stringify({ date: new Date().toISOString(), orders: ORDERS, burst: BURST, customers: CUSTOMERS, preload: PRELOAD, ...results }, null, 2) + "\n");
	writeReport(ROOT);
}

main().catch(err => {
	console.error(`bench:sql: ${(err as Error).stack ?? err}`);
	process.exit(1);
});
