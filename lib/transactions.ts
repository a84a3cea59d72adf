import type { Sequelize } from "sequelize";
import { withConnection, type PgClient } from "./sql";

/**
 * Work a transaction's writers leave for its end, run after its body and before its commit:
 * writers buffer rows (stock levels, outbox events) and write them with one statement instead of
 * one per row. `"derive"` finishers run first (they may write more, e.g. publish events), `"flush"`
 * finishers (the outbox insert) after them, so the buffered rows are written once.
 */
type Phase = "derive" | "flush";

/**
 * A transaction on one of the node's pooled `pg` clients, begun and ended by inTransaction: what
 * `sqlQuery` runs in, and work to do once it has committed (`afterCommit`, e.g. waking the relay).
 */
export interface Transaction {
	readonly connection: PgClient;
	afterCommit(fn: () => unknown): void;
}

class PgTransaction implements Transaction {
	readonly finishers: Record<Phase, Array<() => Promise<void>>> = { derive: [], flush: [] };
	readonly committed: Array<() => unknown> = [];
	constructor(readonly connection: PgClient) {}
	afterCommit(fn: () => unknown): void {
		this.committed.push(fn);
	}
}

/** Queues `fn` to run inside `tx` once its body is done (`tx` must be run by `inTransaction`). */
export function beforeCommit(tx: Transaction, fn: () => Promise<void>, phase: Phase = "derive"): void {
	// A transaction that would commit without running them would lose what they write.
	if (!(tx instanceof PgTransaction)) throw new Error("beforeCommit needs a transaction run by inTransaction");
	tx.finishers[phase].push(fn);
}

/**
 * A managed transaction: BEGIN, `fn`, its finishers, COMMIT, then its after-commit work; ROLLBACK
 * when anything before the commit throws. Its own three statements on a pooled client, not
 * Sequelize's transaction (which was half of what Sequelize still cost the hot path).
 */
export async function inTransaction<T>(sequelize: Sequelize, fn: (tx: Transaction) => Promise<T>): Promise<T> {
	const { tx, result } = await withConnection(sequelize, async connection => {
		const tx = new PgTransaction(connection);
		await connection.query("BEGIN");
		try {
			const result = await fn(tx);
			for (;;) {
				const next = tx.finishers.derive.shift() ?? tx.finishers.flush.shift();
				if (!next) break;
				await next();
			}
			await connection.query("COMMIT");
			return { tx, result };
		} catch (err) {
			// A client that cannot even roll back is broken: the pool must not hand it out again.
			await connection.query("ROLLBACK").catch(() => (connection._invalid = true));
			throw err;
		}
	});
	// After the client is back in the pool (as Sequelize did): after-commit work that reads or
	// writes takes a client of its own and never waits on the one it holds.
	for (const after of tx.committed) await after();
	return result;
}
