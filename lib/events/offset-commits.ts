/** A partition's next offset to read, as Kafka's OffsetCommit takes it. */
export interface PartitionOffset {
	topic: string;
	partition: number;
	offset: string;
}

/**
 * A consumer's offsets, committed together. Each one is added only after its records' transaction
 * committed, so committing later never skips a record: a crash redelivers what was not committed
 * yet, and the inbox skips it. With `intervalMs` 0 every offset is committed at once; otherwise at
 * most one commit (all partitions in one request) starts per interval, and a timer commits what is
 * left after the last one. `close` commits at once from then on, for a consumer that is stopping.
 */
export class OffsetCommits {
	private readonly pending = new Map<string, PartitionOffset>();
	private lastCommit = -Infinity;
	private timer?: NodeJS.Timeout;

	constructor(
		private readonly commit: (offsets: PartitionOffset[]) => Promise<void>,
		private intervalMs: number,
		/** A commit started by the timer failed (its offsets come again with the partition's next records, or are redelivered). */
		private readonly onTimerError: (err: Error) => void,
	) {}

	/** Records a partition's next offset; resolves once committed when a commit is due, else at once. */
	add(offset: PartitionOffset): Promise<void> {
		this.pending.set(`${offset.topic}\u0000${offset.partition}`, offset);
		const wait = this.lastCommit + this.intervalMs - Date.now();
		if (wait <= 0) return this.flush();
		this.timer ??= setTimeout(() => void this.flush().catch(this.onTimerError), wait);
		return Promise.resolve();
	}

	/** Commits every pending offset now. */
	async flush(): Promise<void> {
		clearTimeout(this.timer);
		this.timer = undefined;
		if (this.pending.size === 0) return;
		const offsets = [...this.pending.values()];
		this.pending.clear();
		this.lastCommit = Date.now();
		await this.commit(offsets);
	}

	/** Commits what is pending, and every later offset at once (the consumer is leaving its group). */
	close(): Promise<void> {
		this.intervalMs = 0;
		return this.flush();
	}
}
