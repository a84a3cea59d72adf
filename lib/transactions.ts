import type { Sequelize, Transaction } from "sequelize";

/**
 * Work a transaction's writers leave for its end, run after its body and before its commit:
 * writers buffer rows (stock levels, outbox events) and write them with one statement instead of
 * one per row. `"derive"` finishers run first (they may write more, e.g. publish events), `"flush"`
 * finishers (the outbox insert) after them, so the buffered rows are written once.
 */
type Phase = "derive" | "flush";
const finishers = new WeakMap<Transaction, Record<Phase, Array<() => Promise<void>>>>();

/** Queues `fn` to run inside `tx` once its body is done (`tx` must be run by `inTransaction`). */
export function beforeCommit(tx: Transaction, fn: () => Promise<void>, phase: Phase = "derive"): void {
	const queues = finishers.get(tx);
	// A transaction that would commit without running them would lose what they write.
	if (!queues) throw new Error("beforeCommit needs a transaction run by inTransaction");
	queues[phase].push(fn);
}

/** A managed transaction (commit when `fn` resolves, rollback when it throws) whose finishers run before the commit. */
export function inTransaction<T>(sequelize: Sequelize, fn: (tx: Transaction) => Promise<T>): Promise<T> {
	return sequelize.transaction(async tx => {
		const queues: Record<Phase, Array<() => Promise<void>>> = { derive: [], flush: [] };
		finishers.set(tx, queues);
		const result = await fn(tx);
		for (;;) {
			const next = queues.derive.shift() ?? queues.flush.shift();
			if (!next) return result;
			await next();
		}
	});
}
