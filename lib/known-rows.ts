import { RecentMap } from "./recent-map";
import type { Transaction } from "./transactions";

/**
 * Rows a node wrote last, as its writes returned them with their versions (`RETURNING …,
 * ${WITH_ROW_VERSION}`), offered to a later LockedRead as `known` instead of a read ahead
 * (lib/sql.ts). The read's guard checks them as it checks rows read: a row someone else changed
 * since fails the transaction, which runs again with a read. Forgetting a row only costs that read.
 */
export class KnownRows<R> {
	private readonly rows: RecentMap<string, R>;

	constructor(
		private readonly keyOf: (row: R) => string,
		max: number,
		ttlMs: number,
	) {
		this.rows = new RecentMap(max, ttlMs);
	}

	/**
	 * The rows of all `keys` in key order (a read's ORDER BY on a uuid key: PostgreSQL orders uuids as
	 * their strings sort), or undefined when one is missing. They are taken as they are used, so a guard that fails
	 * is followed by a read, not by the same rows again.
	 */
	take(keys: string[]): R[] | undefined {
		const taken = [...new Set(keys)].sort().map(key => this.rows.take(key));
		return taken.every(row => row !== undefined) ? (taken as R[]) : undefined;
	}

	/** Rows `tx` wrote, kept once it has committed. */
	remember(rows: R[], tx: Transaction): void {
		tx.afterCommit(() => {
			for (const row of rows) this.rows.set(this.keyOf(row), row);
		});
	}

	forget(keys: string[]): void {
		for (const key of keys) this.rows.delete(key);
	}
}

/**
 * Keys (orders) whose rows a step assumes absent the first time it meets them on this node (an
 * order's first delivery has none yet): a LockedRead's `known: []`, guarded like any. Each key is
 * assumed so once, so a guard that fails (a redelivery) is followed by a read.
 */
export class FirstTries {
	private readonly tried: RecentMap<string, true>;

	constructor(max: number, ttlMs: number) {
		this.tried = new RecentMap(max, ttlMs);
	}

	/** No rows (`[]`) when none of `keys` was tried here before, else undefined (read them); all are tried from now on. */
	noRowsYet(keys: string[]): [] | undefined {
		const first = keys.every(key => this.tried.get(key) === undefined);
		for (const key of keys) this.tried.set(key, true);
		return first ? [] : undefined;
	}
}
