import { randomUUID } from "node:crypto";
import type { ActionCacheOptions, Cachers, Context } from "moleculer";

/** A node's name for its versions: new at start and whenever all of them are retired. */
const versionsName = () => randomUUID().slice(0, 8);

/**
 * Versioned cache keys, instead of deleting cached reads when what they read changes. A change gives
 * the changed records (and the collection as a whole) a new version on each node that hears of it,
 * so their old entries are never read again and expire by their TTL: nothing is deleted.
 *
 * Deleting by pattern was Moleculer's `cacher.clean("inventory.**")`, which the Redis cacher does with
 * SCAN over the whole keyspace, rate-limit windows included, on every node, at every stock change:
 * ~1,000 SCAN calls and ~80 ms with 100,000 other keys (bench/ANALYSIS.md).
 *
 * Versions are this node's own (a random name, then a counter per record): nodes hear of changes in
 * different orders, and a version that only ever grows on one node never names an entry written
 * before a change it has heard of. So nodes do not share entries, which only costs a miss each.
 */
export class CacheVersions {
	private node = versionsName();
	private all = 0;
	private readonly records = new Map<string, number>();

	/**
	 * Some records changed (committed): their entries, and those of whole-collection reads, are old.
	 * Without a list, any record may have (a hint from a node that does not name them): every entry is.
	 */
	changed(ids?: Iterable<string>): void {
		if (!ids) {
			// A new name retires every version this node has given; the counters restart under it.
			this.node = versionsName();
			this.records.clear();
			this.all = 0;
			return;
		}
		this.all++;
		for (const id of ids) this.records.set(id, (this.records.get(id) ?? 0) + 1);
	}

	/** The version of a read that depends on every record (a list, a search). */
	ofAll(): string {
		return `${this.node}.${this.all}`;
	}

	/** The version of a read of these records only. */
	of(ids: readonly string[]): string {
		return `${this.node}.${ids.map(id => this.records.get(id) ?? 0).join(".")}`;
	}
}

/** Moleculer's key for the action's cached call, with the version `versionOf` names for it. */
export function versionedKeygen<S, P>(versionOf: (service: S, params: P) => string): NonNullable<ActionCacheOptions["keygen"]> {
	return function (this: Cachers.Base<object>, action, opts, ctx: Context) {
		// Typed as taking the action's name; Moleculer passes the action itself, as here.
		return `${this.defaultKeygen(action as unknown as string, opts, ctx)}@${versionOf(ctx.service as S, ctx.params as P)}`;
	};
}
