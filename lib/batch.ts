/**
 * A service's queue of events waiting to be handled. Whatever arrives while a batch is being
 * handled forms the next batch (up to `max`); an event that arrives when nothing is in flight is
 * handled in the same turn of the event loop, once the turn's other arrivals have joined it
 * (`setImmediate`: the requests of one socket read, the records of one Kafka fetch), so batching
 * adds no wait when idle. Batches run one at a time, in arrival order.
 * With `intervalMs`, a batch that would start sooner than that after the last one waits out the
 * rest of the interval (unless it is full): under load, fewer and larger batches; still no wait
 * after a quiet interval.
 */
export class BatchQueue<T> {
	private readonly waiting: Array<{ item: T; done: () => void; failed: (err: unknown) => void }> = [];
	private running = false;
	private lastStart = -Infinity;
	/** Ends a paced wait early (the queue filled up meanwhile). */
	private fill?: () => void;

	constructor(
		/** Handles one batch; a rejection fails every item of that batch. */
		private readonly handle: (items: T[]) => Promise<void>,
		private readonly max: number,
		private readonly intervalMs = 0,
	) {}

	/** Resolves once every item has been handled (in this batch or the next ones). */
	push(items: T[]): Promise<void> {
		const settled = items.map(item => new Promise<void>((done, failed) => this.waiting.push({ item, done, failed })));
		if (this.waiting.length >= this.max) this.fill?.();
		if (!this.running) {
			this.running = true;
			setImmediate(() => void this.drain());
		}
		return Promise.all(settled).then(() => undefined);
	}

	/** Items waiting for a batch, and whether one is in flight (for tests and metrics). */
	get depth(): number {
		return this.waiting.length;
	}

	/** Runs batches until none is waiting; `running` is set by the push that scheduled it. */
	private async drain(): Promise<void> {
		try {
			while (this.waiting.length > 0) {
				const wait = this.lastStart + this.intervalMs - Date.now();
				if (wait > 0 && this.waiting.length < this.max) {
					await new Promise<void>(resolve => {
						const timer = setTimeout(resolve, wait);
						this.fill = () => {
							clearTimeout(timer);
							resolve();
						};
					});
					this.fill = undefined;
				}
				this.lastStart = Date.now();
				const batch = this.waiting.splice(0, this.max);
				try {
					await this.handle(batch.map(b => b.item));
					for (const b of batch) b.done();
				} catch (err) {
					for (const b of batch) b.failed(err);
				}
			}
		} finally {
			this.running = false;
		}
	}
}

/**
 * Applies `items` as one unit with `apply`; when that fails, splits the batch in two and applies
 * each half in turn, down to single items, which `single` takes (retries, then dead-letter). A
 * poison item is so isolated: it never blocks or re-applies the others, and order is kept.
 */
export async function applyBisecting<T>(items: T[], apply: (items: T[]) => Promise<void>, single: (item: T) => Promise<void>): Promise<void> {
	if (items.length === 0) return;
	if (items.length === 1) return single(items[0]);
	try {
		await apply(items);
	} catch {
		const half = Math.ceil(items.length / 2);
		await applyBisecting(items.slice(0, half), apply, single);
		await applyBisecting(items.slice(half), apply, single);
	}
}

/**
 * Group commit: what callers submit while a group is being written forms the next group, written
 * by one call of `write` (one transaction); each caller gets its own item's result. `write` answers
 * per item, a value or an Error (a business refusal that concerns that item only); when it throws,
 * the group is split until the failing item stands alone and gets that error, so one bad item
 * never fails the others. No wait when idle: an item alone is written at once. The same queue
 * coalesces reads (inventory's availability: the requests waiting are answered by one SELECT).
 */
export class GroupCommit<T, R> {
	private readonly queue: BatchQueue<{ item: T; result?: R | Error }>;

	constructor(write: (items: T[]) => Promise<Array<R | Error>>, max: number) {
		this.queue = new BatchQueue(
			slots =>
				applyBisecting(
					slots,
					async group => {
						const results = await write(group.map(s => s.item));
						group.forEach((s, i) => (s.result = results[i]));
					},
					async one => {
						one.result = await write([one.item]).then(
							([result]) => result,
							(err: unknown) => (err instanceof Error ? err : new Error(String(err))),
						);
					},
				),
			max,
		);
	}

	async submit(item: T): Promise<R> {
		const slot: { item: T; result?: R | Error } = { item };
		await this.queue.push([slot]);
		if (slot.result instanceof Error) throw slot.result;
		return slot.result as R;
	}
}
