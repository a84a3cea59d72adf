import { backoffDelay } from "./events/backoff";

/**
 * The claim-retry-give-up sweep that refunds, reconciliations and e-mails share: due rows are
 * claimed (leased for a while, so one node works on each, and their attempt counted), tried one
 * by one, and each outcome recorded as done, retried later with backoff, or given up after the
 * last try. What a row is, how it is tried and how each verdict is written is the caller's.
 */
export interface Sweep<Row, Outcome> {
	/** Claims the due rows (see claimSql) and answers them with their attempt counted. */
	claim(): Promise<Row[]>;
	attempt(row: Row): Promise<Outcome>;
	/** Whether the try settled the row (no retry). */
	settled(outcome: Outcome): boolean;
	attemptsOf(row: Row): number;
	maxAttempts: number;
	/** Backoff base and ceiling for the next try, in ms. */
	retry: { baseMs: number; maxMs: number };
	record(row: Row, outcome: Outcome, verdict: SweepVerdict): Promise<void>;
}

export type SweepVerdict = { kind: "done" } | { kind: "retry"; next: Date } | { kind: "gaveUp" };

/** What becomes of a row after a try (pure). */
export function verdictOf(settled: boolean, attempts: number, maxAttempts: number, retry: { baseMs: number; maxMs: number }, now = Date.now()): SweepVerdict {
	if (settled) return { kind: "done" };
	if (attempts >= maxAttempts) return { kind: "gaveUp" };
	return { kind: "retry", next: new Date(now + backoffDelay(attempts, retry.baseMs, retry.maxMs)) };
}

export async function runSweep<Row, Outcome>(sweep: Sweep<Row, Outcome>): Promise<void> {
	for (const row of await sweep.claim()) {
		const outcome = await sweep.attempt(row);
		await sweep.record(row, outcome, verdictOf(sweep.settled(outcome), sweep.attemptsOf(row), sweep.maxAttempts, sweep.retry));
	}
}

/**
 * The claim statement: leases up to `limit` due rows of `table` for `leaseSeconds` (moving their
 * `nextColumn`) and counts the attempt in `attemptsColumn`; rows another node holds are skipped.
 */
export function claimSql(o: { table: string; due: string; nextColumn: string; attemptsColumn: string; leaseSeconds: number; limit?: number }): string {
	return `UPDATE ${o.table} SET ${o.nextColumn} = now() + interval '${o.leaseSeconds} seconds', ${o.attemptsColumn} = ${o.attemptsColumn} + 1
	 WHERE id IN (SELECT id FROM ${o.table} WHERE ${o.due} ORDER BY ${o.nextColumn} LIMIT ${o.limit ?? 20} FOR UPDATE SKIP LOCKED) RETURNING *`;
}
