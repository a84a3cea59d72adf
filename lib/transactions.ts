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
	/**
	 * A write nobody reads the result of: sent in the same message as the transaction's next
	 * statement, or its COMMIT. A `"check"` (a read's guard, an inbox record) is one that no later
	 * read of the transaction needs to see, so reads may still be read ahead of it. `onRows` gets
	 * its rows (a RETURNING) once the message that carried it is answered.
	 */
	queue(text: string, kind?: "write" | "check", onRows?: (rows: unknown[]) => void): void;
	/** Whether reads may still be sent ahead of the transaction (readAhead). */
	readonly mayReadAhead: boolean;
	/** Whether this try may fail on a guard and run again (readAhead, before the last try, which locks as it reads). */
	readonly optimistic: boolean;
	/** Reads sent outside the transaction, before it begins: the rows of each (only while mayReadAhead). */
	readAhead(texts: string[]): Promise<unknown[][]>;
	/**
	 * The transaction's last statement, sent with what its finishers queue and the COMMIT in one
	 * message: its rows (a write's RETURNING rows). Nothing may be sent in it afterwards.
	 */
	queryAndCommit(text: string): Promise<unknown[]>;
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
	/** Committed by queryAndCommit. */
	private ended = false;
	private queued: Array<{ text: string; onRows?: (rows: unknown[]) => void }> = [];
	private wrote = false;
	constructor(
		readonly connection: PgClient,
		private readonly readsAhead: boolean,
	) {}

	get mayReadAhead(): boolean {
		return this.readsAhead && !this.begun && !this.wrote;
	}
	get optimistic(): boolean {
		return this.readsAhead;
	}
	async readAhead(texts: string[]): Promise<unknown[][]> {
		if (!this.mayReadAhead) throw new Error("readAhead after the transaction began or wrote");
		return rowsOfEach(await this.connection.query(texts.join(SEPARATOR)), texts);
	}

	async query(text: string): Promise<unknown[]> {
		return (await this.queryEach([text]))[0];
	}
	queryEach(texts: string[]): Promise<unknown[][]> {
		return this.send(texts);
	}
	queue(text: string, kind: "write" | "check" = "write", onRows?: (rows: unknown[]) => void): void {
		this.queued.push({ text, onRows });
		if (kind === "write") this.wrote = true;
	}
	afterCommit(fn: () => unknown): void {
		this.committed.push(fn);
	}
	async queryAndCommit(text: string): Promise<unknown[]> {
		await this.finish();
		const [rows] = await this.send([text, "COMMIT"]);
		this.ended = true;
		return rows;
	}
	/** Its finishers, then COMMIT with what is still queued; nothing at all when the transaction never sent a statement. */
	async commit(): Promise<void> {
		if (this.ended) return;
		await this.finish();
		if (this.begun || this.queued.length > 0) await this.send(["COMMIT"]);
	}

	private async finish(): Promise<void> {
		for (;;) {
			const next = this.finishers.derive.shift() ?? this.finishers.flush.shift();
			if (!next) break;
			await next();
		}
	}

	/** `texts` in one message after BEGIN (if not sent yet) and what is queued: the rows of each of `texts`. */
	private async send(texts: string[]): Promise<unknown[][]> {
		if (this.ended) throw new Error("a statement after the transaction's commit");
		const pending = [...(this.begun ? [] : [{ text: "BEGIN" }]), ...this.queued];
		this.begun = true;
		this.queued = [];
		const all = [...pending.map(p => p.text), ...texts];
		const rows = rowsOfEach(await this.connection.query(all.join(SEPARATOR)), all);
		pending.forEach((p, i) => p.onRows?.(rows[i]));
		return rows.slice(pending.length);
	}
}

/** Queues `fn` to run inside `tx` once its body is done (`tx` must be run by `inTransaction`). */
export function beforeCommit(tx: Transaction, fn: () => Promise<void>, phase: Phase = "derive"): void {
	// A transaction that would commit without running them would lose what they write.
	if (!(tx instanceof PgTransaction)) throw new Error("beforeCommit needs a transaction run by inTransaction");
	tx.finishers[phase].push(fn);
}

/** Optimistic attempts of a transaction that reads ahead before one that locks as it reads. */
const READ_AHEAD_ATTEMPTS = 2;

/** A read's guard found its rows changed (SQLSTATE 40001, raised by `unchanged_since_read`). */
const isSerializationFailure = (err: unknown) => (err as { code?: string } | undefined)?.code === "40001";

export interface TransactionOptions {
	/**
	 * Let its locked reads (lib/sql `lockedRead`) be read ahead: sent before BEGIN without locks,
	 * and checked under lock in the message that commits, so the transaction is one message and
	 * never holds the database between messages (embedded, PGlite runs one transaction at a time
	 * and waits through such gaps). When the rows changed in between, `fn` runs again from the
	 * start: it must have no effect outside `tx`. After READ_AHEAD_ATTEMPTS it locks as it reads.
	 */
	readAhead?: boolean;
	/** Told each time rows read ahead had changed and `fn` runs again (a contention metric). */
	onRetry?: () => void;
}

/**
 * A managed transaction: BEGIN, `fn`, its finishers, COMMIT, then its after-commit work; ROLLBACK
 * when anything before the commit throws. Its own statements on a pooled client, not Sequelize's
 * transaction (which was half of what Sequelize still cost the hot path).
 */
export async function inTransaction<T>(sequelize: Sequelize, fn: (tx: Transaction) => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
	for (let attempt = 1; ; attempt++) {
		const readAhead = opts.readAhead === true && attempt <= READ_AHEAD_ATTEMPTS;
		try {
			return await attemptTransaction(sequelize, fn, readAhead);
		} catch (err) {
			if (!readAhead || !isSerializationFailure(err)) throw err;
			opts.onRetry?.();
		}
	}
}

async function attemptTransaction<T>(sequelize: Sequelize, fn: (tx: Transaction) => Promise<T>, readAhead: boolean): Promise<T> {
	const { tx, result } = await withConnection(sequelize, async connection => {
		const tx = new PgTransaction(connection, readAhead);
		try {
			const result = await fn(tx);
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
