import type { Sequelize } from "sequelize";
import { rowsOfEach, SEPARATOR, withConnection, type PgClient } from "./sql";

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
	/** A statement in the transaction: its rows. */
	query(text: string): Promise<unknown[]>;
	/** Statements whose texts do not depend on each other's results, in one message: the rows of each. */
	queryEach(texts: string[]): Promise<unknown[][]>;
	/** A write nobody reads the result of: sent in the same message as the transaction's next statement, or its COMMIT. */
	queue(text: string): void;
	afterCommit(fn: () => unknown): void;
}

/**
 * Round trips are most of what a short statement costs (embedded, each message is a pass through
 * the socket server and PGlite), so a transaction sends no message of its own for BEGIN (it goes
 * with the first statement) nor for queued writes (they go with the next statement or the COMMIT).
 */
class PgTransaction implements Transaction {
	readonly finishers: Record<Phase, Array<() => Promise<void>>> = { derive: [], flush: [] };
	readonly committed: Array<() => unknown> = [];
	begun = false;
	private queued: string[] = [];
	constructor(readonly connection: PgClient) {}

	async query(text: string): Promise<unknown[]> {
		return (await this.queryEach([text]))[0];
	}
	async queryEach(texts: string[]): Promise<unknown[][]> {
		return rowsOfEach(await this.connection.query(this.withPending(texts.join(SEPARATOR))), texts);
	}
	queue(text: string): void {
		this.queued.push(text);
	}
	afterCommit(fn: () => unknown): void {
		this.committed.push(fn);
	}
	/** COMMIT with what is still queued; nothing at all when the transaction never sent a statement. */
	async commit(): Promise<void> {
		if (this.begun || this.queued.length > 0) await this.connection.query(this.withPending("COMMIT"));
	}

	private withPending(text: string): string {
		const message = [...(this.begun ? [] : ["BEGIN"]), ...this.queued, text].join(SEPARATOR);
		this.begun = true;
		this.queued = [];
		return message;
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
 * when anything before the commit throws. Its own statements on a pooled client, not Sequelize's
 * transaction (which was half of what Sequelize still cost the hot path).
 */
export async function inTransaction<T>(sequelize: Sequelize, fn: (tx: Transaction) => Promise<T>): Promise<T> {
	const { tx, result } = await withConnection(sequelize, async connection => {
		const tx = new PgTransaction(connection);
		try {
			const result = await fn(tx);
			for (;;) {
				const next = tx.finishers.derive.shift() ?? tx.finishers.flush.shift();
				if (!next) break;
				await next();
			}
			await tx.commit();
			return { tx, result };
		} catch (err) {
			// A client that cannot even roll back is broken: the pool must not hand it out again.
			if (tx.begun) await connection.query("ROLLBACK").catch(() => (connection._invalid = true));
			throw err;
		}
	});
	// After the client is back in the pool (as Sequelize did): after-commit work that reads or
	// writes takes a client of its own and never waits on the one it holds.
	for (const after of tx.committed) await after();
	return result;
}
