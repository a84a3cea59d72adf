import type { Sequelize } from "sequelize";
import type { Logger } from "moleculer";
import { quoteIdent } from "../migrations";
import { aggregateKey, createEnvelope, type DomainEvent, type PublishOptions } from "./envelope";
import { backoffDelay } from "./backoff";
import { beforeCommit, inTransaction, type Transaction } from "../transactions";
import { queueSql, sqlQuery } from "../sql";

export interface OutboxMessage {
	seq: string;
	key: string;
	event: DomainEvent;
}

/** Where the relay hands committed events: Kafka, or the Moleculer bus. Throws to keep them. */
export type PublishBatch = (messages: OutboxMessage[]) => Promise<void>;

/**
 * Kafka confirms a publish, so a batch is marked in the transaction that publishes it and a failed
 * publish keeps its rows. The Moleculer bus hands events over in memory: `handOver` resolves once
 * the consumers on this node have handled them (committed, or dead-lettered) and the others' have
 * been sent. So a batch is marked as handed over by one statement of its own (no transaction held
 * around the hand-over), and as published by a later round once `handOver` resolved: a node killed
 * in between leaves them handed over and unpublished, and the next start hands them over again
 * (consumers deduplicate by eventId) instead of losing them.
 */
export type Publisher = PublishBatch | { handOver: (events: DomainEvent[]) => Promise<unknown> };

/**
 * Embedded (one process on PGlite, which runs one transaction at a time, so rows commit in `seq`
 * order), a bus relay hands a transaction's events over as it commits, from memory, and marks the
 * handled ones published together on its timer: no relay round (lock, mark, read back) between a
 * commit and its consumers. It first hands over what an earlier run left unpublished, in order,
 * and only then goes direct. A node killed before the mark hands them over again on its next
 * start (consumers deduplicate by eventId), as in rounds.
 */
export type RelayMode = "rounds" | "direct";

/** Events written in a transaction and not yet inserted: one multi-row insert at its end. */
const pending = new WeakMap<Transaction, Array<{ event: DomainEvent; key: string }>>();

/**
 * Writes an event into the service's outbox inside the caller's transaction (which must be run by
 * `inTransaction`): the transaction's events are inserted together, in the order they were
 * written, with one statement sent with its COMMIT. The events travel as one JSON literal, not as
 * an array of JSON texts: an array literal escapes every quote of every envelope once more, which
 * took about five times the node's time to write and 15 % more of PGlite's to read (measured on
 * batches of eight envelopes; bench/ANALYSIS.md).
 */
export function writeToOutbox(
	sequelize: Sequelize,
	schema: string,
	tx: Transaction,
	eventName: string,
	data: Record<string, any>,
	producer: DomainEvent["producer"],
	opts: PublishOptions = {},
): DomainEvent {
	const event = createEnvelope(eventName, data, producer, opts);
	let rows = pending.get(tx);
	if (!rows) {
		const batch: Array<{ event: DomainEvent; key: string }> = (rows = []);
		pending.set(tx, batch);
		beforeCommit(tx, async () => {
			pending.delete(tx); // events written by later finishers form a new batch
			queueSql(
				sequelize,
				tx,
				`INSERT INTO ${quoteIdent(schema)}.outbox (event_id, event_name, aggregate_key, envelope)
				 SELECT (r.event->>'eventId')::uuid, r.event->>'eventName', r.key, r.event FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r (key text, event jsonb)`,
				{ rows: JSON.stringify(batch) },
			);
		}, "flush");
	}
	rows.push({ event, key: aggregateKey(event, opts.key) });
	return event;
}

type OutboxRow = { seq: string; aggregate_key: string; envelope: DomainEvent };
const toMessage = (r: OutboxRow): OutboxMessage => ({ seq: String(r.seq), key: r.aggregate_key, event: r.envelope });

const BATCH = 200;
/** How soon a relay that found the lock held tries again (not at its next sweep, up to OUTBOX_POLL_MS later). */
const LOCK_RETRY_MS = 20;
/** Direct: how long a row stays unpublished before a live round hands it over again. */
const STALE_S = 10;

/**
 * Publishes committed outbox rows in commit order. One relay per service is active in the whole
 * cluster at a time (a transaction-scoped advisory lock), so an aggregate's events leave in the
 * order they were written; a publisher that confirms (Kafka) has its rows marked in the transaction
 * that published them, so a crash before the mark republishes (at least once) and consumers
 * deduplicate by eventId (see Publisher for the bus).
 * It is woken after each commit (direct, see RelayMode: hands the commit's events over itself) and
 * also sweeps on a timer for what a crash left behind.
 */
export class OutboxRelay {
	private running = false;
	private loop?: Promise<void>;
	private wake?: () => void;
	private wakeScheduled = false;
	/** The last round found another node's relay holding the lock. */
	private lockedOut = false;
	private pending = false;
	private failures = 0;
	private lastCleanup = 0;
	private lastBacklogReport = 0;
	/** On the bus: event ids of rows whose hand-over resolved, marked published by the next round. */
	private handled: string[] = [];
	/** On the bus: whether this relay has given back what an earlier run handed over and never saw handled. */
	private recovered = false;
	/** Direct: the last row handed over while catching up, and whether commits are now handed over as they happen. */
	private caughtUpTo = "0";
	private live = false;
	/** Direct: event ids whose hand-over has not settled yet. */
	private readonly inFlight = new Set<string>();
	private readonly table: string;
	/** The advisory lock one relay of the schema holds at a time, cluster-wide. */
	private readonly lockName: string;
	/** A statement's CTE that marks published the rows handled since the last round (`:handled`). */
	private readonly markHandled: string;

	constructor(
		private readonly sequelize: Sequelize,
		private readonly schema: string,
		private readonly publisher: Publisher,
		private readonly logger: Logger,
		private readonly pollMs: number,
		/** Told the backlog after each round (for the outbox backlog gauge). */
		private readonly onBacklog?: (backlog: number) => void,
		private readonly mode: RelayMode = "rounds",
	) {
		if (mode === "direct" && typeof publisher === "function") throw new Error("direct hand-over is for the bus");
		this.table = `${quoteIdent(schema)}.outbox`;
		this.lockName = `outbox:${schema}`;
		this.markHandled = `handled AS (UPDATE ${this.table} SET published_at = now() WHERE event_id = ANY(ARRAY[:handled]::uuid[]) AND published_at IS NULL)`;
	}

	start(): void {
		if (this.running) return;
		this.running = true;
		this.caughtUpTo = "0"; // what a hand-over of the last run left unpublished, again
		this.loop = this.run();
	}

	/** Called after a commit that wrote `event`: handed over now (direct), or published by a round started now. */
	committed(event: DomainEvent): void {
		if (this.live && this.running) this.handOver([event]);
		else this.notify();
	}

	/**
	 * Publish now instead of at the next sweep: on the next turn of the event loop, so that the
	 * commits finishing in this turn share one round (one lock, one read, one produce request).
	 */
	notify(): void {
		this.pending = true;
		if (this.wakeScheduled) return;
		this.wakeScheduled = true;
		setImmediate(() => {
			this.wakeScheduled = false;
			this.wake?.();
		});
	}

	async stop(): Promise<void> {
		this.running = false;
		this.wake?.();
		await this.loop;
		this.live = false;
		// Else handed over again on the next start: harmless.
		if (this.handled.length > 0) await (this.mode === "direct" ? this.markHandledAndRead("false") : this.markBatch("handed_at", undefined, 0)).catch(() => undefined);
	}

	/** Rows written but not yet published (the outbox backlog); handled ones waiting for their mark are not. */
	async backlog(): Promise<number> {
		const [row] = await sqlQuery<{ n: string }>(this.sequelize, `SELECT count(*) AS n FROM ${this.table} WHERE published_at IS NULL`);
		return Math.max(0, Number(row.n) - this.handled.length);
	}

	private async run(): Promise<void> {
		while (this.running) {
			this.pending = false;
			this.lockedOut = false;
			let wait = this.pollMs;
			try {
				if (this.live) await this.sweep();
				else await this.drain();
				// Caught up with nothing committed meanwhile: from now on commits are handed over as they happen.
				if (this.mode === "direct" && !this.pending) this.live = true;
				await this.cleanup();
				await this.reportBacklog();
				if (this.failures > 0) this.logger.info(`Outbox of ${this.schema} publishes again.`);
				this.failures = 0;
				// Another node's relay holds the lock: its round may have read its batch before this
				// node's commit, so this relay tries again shortly instead of at the next sweep.
				if (this.lockedOut) wait = Math.min(wait, LOCK_RETRY_MS);
			} catch (err) {
				this.failures++;
				wait = backoffDelay(this.failures, 200, 5000);
				if (this.failures === 1 || this.failures % 20 === 0) {
					this.logger.warn(`Outbox of ${this.schema} cannot publish yet (${(err as Error).message}); events stay in the outbox.`);
				}
			}
			if (this.running && !this.pending) await this.idle(wait);
		}
	}

	private idle(ms: number): Promise<void> {
		return new Promise<void>(resolve => {
			const timer = setTimeout(done, ms);
			function done() {
				clearTimeout(timer);
				resolve();
			}
			this.wake = done;
		}).finally(() => (this.wake = undefined));
	}

	/** Publishes until the outbox is empty or another node holds the relay lock. */
	async drain(): Promise<void> {
		for (;;) {
			const { publisher } = this;
			const published =
				typeof publisher === "function"
					? await inTransaction(this.sequelize, async tx => {
							const messages = await this.markBatch("published_at", tx);
							// A failed publish rolls the mark back with the transaction.
							if (messages.length > 0) await publisher(messages);
							return messages.length;
						})
					: await this.handOverBatch();
			if (published < BATCH) return;
		}
	}

	/** The bus: the next batch marked as handed over (direct: read), handed over, and remembered as handled once `handOver` resolves. */
	private async handOverBatch(): Promise<number> {
		if (this.mode === "direct") {
			const messages = await this.markHandledAndRead("seq > :after", { after: this.caughtUpTo });
			if (messages.length > 0) this.caughtUpTo = messages[messages.length - 1].seq;
			this.handOver(messages.map(m => m.event));
			return messages.length;
		}
		if (!this.recovered) {
			// Handed over and never seen handled: by a node that was killed, again. (In a cluster, rows
			// in flight on another node's relay are handed over a second time: consumers deduplicate.)
			await sqlQuery(this.sequelize, `UPDATE ${this.table} SET handed_at = NULL WHERE published_at IS NULL AND handed_at IS NOT NULL`);
			this.recovered = true;
		}
		const messages = await this.markBatch("handed_at");
		this.handOver(messages.map(m => m.event));
		return messages.length;
	}

	/** Hands events over on the bus; remembered as handled once the hand-over resolves (one that fails leaves its rows unpublished). */
	private handOver(events: DomainEvent[]): void {
		const { publisher } = this;
		if (events.length === 0 || typeof publisher === "function") return;
		const ids = events.map(e => e.eventId);
		for (const id of ids) this.inFlight.add(id);
		// A hand-over that throws at once fails like one that rejects (never into the committer's after-commit work).
		void new Promise(resolve => resolve(publisher.handOver(events)))
			.then(
				() => this.handled.push(...ids),
				() => undefined,
			)
			.finally(() => ids.forEach(id => this.inFlight.delete(id)));
	}

	/**
	 * Direct: a live round marks published what was handled since the last one, and hands over
	 * again what stayed unpublished for STALE_S with no hand-over of this run holding it (one that
	 * failed, a commit whose after-commit work never ran).
	 */
	private async sweep(): Promise<void> {
		const stale = await this.markHandledAndRead(`created_at < now() - make_interval(secs => ${STALE_S})`);
		this.handOver(stale.filter(m => !this.inFlight.has(m.event.eventId)).map(m => m.event));
	}

	/**
	 * Direct: the rows handled since the last round marked published, and in the same message the
	 * unpublished rows that match `where` (not those just marked: the read does not see the mark).
	 */
	private markHandledAndRead(where: string, params: Record<string, unknown> = {}): Promise<OutboxMessage[]> {
		return this.withHandled(async handled => {
			const rows = await sqlQuery<OutboxRow>(
				this.sequelize,
				`WITH ${this.markHandled} SELECT seq, aggregate_key, envelope FROM ${this.table}
				 WHERE published_at IS NULL AND ${where} AND event_id <> ALL(ARRAY[:handled]::uuid[]) ORDER BY seq LIMIT ${BATCH}`,
				{ ...params, handled },
			);
			return rows.map(toMessage);
		});
	}

	/** Runs `fn` with the event ids handled since the last round, which stay for the next round if it fails. */
	private async withHandled<T>(fn: (handled: string[]) => Promise<T>): Promise<T> {
		const handled = this.handled.splice(0);
		try {
			return await fn(handled);
		} catch (err) {
			this.handled.unshift(...handled);
			throw err;
		}
	}

	/**
	 * The relay lock, the next batch (at most `take` rows) and its mark in one statement: no rows
	 * when another node holds the lock (a CTE with a volatile function is evaluated once, before the
	 * rows are read); the lock lasts as long as `tx`, or this statement without one. Kafka marks its
	 * batch `published_at`; the bus marks it `handed_at`, and in the same statement marks published
	 * the rows whose hand-over resolved since the last round. Without `tx` the statement's snapshot
	 * is taken before the lock: a relay that got the lock just as another committed its batch still
	 * sees that batch unmarked, so the UPDATE checks the mark again on the row's latest version.
	 */
	private async markBatch(mark: "published_at" | "handed_at", tx?: Transaction, take = BATCH): Promise<OutboxMessage[]> {
		const bus = mark === "handed_at";
		if (tx) {
			// In a transaction, the lock is taken by a statement of its own, before the claim, so that the
			// claim's snapshot is taken once it is held: a claim whose snapshot predated the last holder's
			// commit read that holder's batch as unpublished, marked none of it, and ended the drain
			// with rows left for the next sweep.
			queueSql(this.sequelize, tx, "SELECT set_config('outbox_relay.locked', pg_try_advisory_xact_lock(hashtext(:name))::text, true)", { name: this.lockName }, "check");
			// The batch is then read through the unpublished index in seq order, which marks the entries
			// of rows published since the last vacuum dead as it passes them. A bitmap scan, which the
			// planner picks on a young table (no statistics yet), marks none, so every round read them
			// all again: in a new cluster's first minute a round read over 2,000 pages (bench/ANALYSIS.md).
			tx.queue("SET LOCAL enable_bitmapscan = off", "check");
		}
		const locked = tx ? "current_setting('outbox_relay.locked')::boolean" : "pg_try_advisory_xact_lock(hashtext(:name))";
		const run = async (handled: string[]) => {
			// One row at least: whether the lock was had, and the marked rows beside it.
			const rows = await sqlQuery<{ ok: boolean } & Partial<OutboxRow>>(
				this.sequelize,
				`WITH relay AS (SELECT ${locked} AS ok),
				      ${bus ? `${this.markHandled},` : ""}
				      batch AS (SELECT seq FROM relay, ${this.table} WHERE relay.ok AND published_at IS NULL ${bus ? "AND handed_at IS NULL" : ""} ORDER BY seq LIMIT ${take}),
				      marked AS (
				        UPDATE ${this.table} o SET ${mark} = now() FROM batch
				        WHERE o.seq = batch.seq AND o.published_at IS NULL ${bus ? "AND o.handed_at IS NULL" : ""}
				        RETURNING o.seq, o.aggregate_key, o.envelope)
				 SELECT relay.ok, marked.* FROM relay LEFT JOIN marked ON true`,
				{ name: this.lockName, ...(bus ? { handled } : {}) },
				tx,
			);
			if (!rows[0]?.ok) this.lockedOut = true;
			const marked = rows.filter((r): r is { ok: boolean } & OutboxRow => r.seq != null);
			marked.sort((a, b) => Number(a.seq) - Number(b.seq)); // RETURNING keeps no order
			return marked.map(toMessage);
		};
		return bus ? this.withHandled(run) : run([]);
	}

	/** The backlog gauge, at most once per poll interval (not after every commit's wake-up). */
	private async reportBacklog(): Promise<void> {
		if (!this.onBacklog || Date.now() - this.lastBacklogReport < this.pollMs) return;
		this.lastBacklogReport = Date.now();
		this.onBacklog(await this.backlog());
	}

	/** Published rows are kept a day for inspection, then removed. */
	private async cleanup(): Promise<void> {
		if (Date.now() - this.lastCleanup < 60_000) return;
		this.lastCleanup = Date.now();
		await sqlQuery(this.sequelize, `DELETE FROM ${this.table} WHERE published_at < now() - interval '1 day'`);
	}
}

