/**
 * A map that keeps only its most recent entries: at most `max` (the oldest set goes first), each
 * for `ttlMs` after it was last set. For what a node remembers of its own recent work to spare a
 * read, where forgetting only costs the read.
 */
export class RecentMap<K, V> {
	private readonly entries = new Map<K, { value: V; until: number }>();

	constructor(
		private readonly max: number,
		private readonly ttlMs: number,
		private readonly now: () => number = Date.now,
	) {}

	get(key: K): V | undefined {
		const entry = this.entries.get(key);
		if (entry && entry.until <= this.now()) {
			this.entries.delete(key);
			return undefined;
		}
		return entry?.value;
	}

	/** The entry, forgotten as it is taken. */
	take(key: K): V | undefined {
		const value = this.get(key);
		this.entries.delete(key);
		return value;
	}

	set(key: K, value: V): void {
		this.entries.delete(key);
		this.entries.set(key, { value, until: this.now() + this.ttlMs });
		if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
	}

	delete(key: K): void {
		this.entries.delete(key);
	}

	get size(): number {
		return this.entries.size;
	}
}
