import type { Sequelize } from "sequelize";
import type { Logger } from "moleculer";
import { quoteIdent } from "../migrations";
import type { DomainEvent } from "./envelope";
import { backoffDelay, sleep } from "./backoff";
import { inTransaction, type Transaction } from "../transactions";
import { isUniqueViolation, queueSql, sqlQuery } from "../sql";

export type ConsumeOutcome = "processed" | "duplicate" | "dead-lettered";

/** Records `(consumer, :eventId)`; returns the id only when the event is new to this consumer. */
const recordSql = (schema: string) =>
	`INSERT INTO ${quoteIdent(schema)}.processed_events (event_id, event_name) VALUES (:eventId, :eventName) ON CONFLICT (event_id) DO NOTHING RETURNING event_id`;

/**
 * Runs `effect` once per eventId for this consumer, for a batch of events in one transaction: their
 * `(consumer, eventId)` records and the effect commit together, so a redelivered event finds its
 * record and has no second effect. `effect` gets the ids new to this consumer (an id seen before,
 * or twice in the batch, at most once). (Each service has its own schema, so the schema is the consumer.)
 *
 * A duplicate is rare (a redelivery after a crash or a rebalance), so distinct events are first
 * taken as all new: their records are inserted without a message of their own, with the
 * transaction's first statement (embedded, a transaction holds PGlite between its messages). One
 * seen before fails that insert with a unique violation and rolls the attempt back; the batch is
 * then run again with the records written first, ON CONFLICT DO NOTHING, and only the new ids given.
 * On that first try the effect's locked reads are read ahead (TransactionOptions.readAhead), so
 * the effect must have no effect outside its transaction: it may run again.
 *
 * `ownInbox`: the effect is its own record (a row per event id, written ON CONFLICT DO NOTHING, so
 * an event seen before changes nothing): no records are kept, and `fresh` is the batch's ids.
 */
export async function consumeBatchOnce<T>(
	sequelize: Sequelize,
	schema: string,
	events: Array<Pick<DomainEvent, "eventId" | "eventName">>,
	effect: (tx: Transaction, fresh: Set<string>) => Promise<T>,
	opts: { onRetry?: () => void; ownInbox?: boolean } = {},
): Promise<T> {
	const { onRetry } = opts;
	if (opts.ownInbox) return inTransaction(sequelize, tx => effect(tx, new Set(events.map(e => e.eventId))), { readAhead: true, onRetry });
	const insert = `INSERT INTO ${quoteIdent(schema)}.processed_events (event_id, event_name) SELECT * FROM unnest(ARRAY[:ids]::uuid[], ARRAY[:names]::text[])`;
	const records = { ids: events.map(e => e.eventId), names: events.map(e => e.eventName) };
	if (new Set(records.ids).size === records.ids.length) {
		try {
			return await inTransaction(
				sequelize,
				tx => {
					queueSql(sequelize, tx, insert, records, "check");
					return effect(tx, new Set(records.ids));
				},
				{ readAhead: true, onRetry },
			);
		} catch (err) {
			if (!mayBeSeenBefore(err)) throw err;
		}
	}
	return inTransaction(sequelize, async tx => {
		const rows = await sqlQuery<{ event_id: string }>(sequelize, `${insert} ON CONFLICT (event_id) DO NOTHING RETURNING event_id`, records, tx);
		return effect(tx, new Set(rows.map(r => r.event_id)));
	});
}

/**
 * Whether an attempt that took its events as new may have met one seen before: a unique violation,
 * or a statement refused because the transaction had failed already (a handler that caught the
 * violation and went on).
 */
const mayBeSeenBefore = (err: unknown) => isUniqueViolation(err) || (err as { code?: string } | undefined)?.code === "25P02";

/**
 * A set-based handler's SQL for events whose inbox records are already written: `inbox` holds one
 * row `(event_id, envelope)` per event (replacement `envelopes`: the events as one JSON array,
 * as writeToOutbox in lib/events/relay.ts sends them).
 */
export const knownNewSet = (statement: string) =>
	`WITH inbox AS (SELECT (envelope->>'eventId')::uuid AS event_id, envelope FROM jsonb_array_elements(CAST(:envelopes AS jsonb)) AS inbox (envelope)) ${statement}`;

/** The replacements of knownNewSet's `inbox` for these events. */
export const inboxRows = (events: DomainEvent[]) => ({ envelopes: JSON.stringify(events) });

/** A set statement that is its own inbox (see consumeBatchOnce), for any events, seen before or not: one statement, no records. */
export async function applyOwnInboxSet(sequelize: Sequelize, events: DomainEvent[], statement: string): Promise<void> {
	await sqlQuery(sequelize, knownNewSet(statement), inboxRows(events));
}

/** A set-based handler's SQL for one event, its inbox record written in the same statement (it takes effect only if new). */
export async function consumeSetOnce(sequelize: Sequelize, schema: string, event: DomainEvent, statement: string, opts: { ownInbox?: boolean } = {}): Promise<void> {
	if (opts.ownInbox) return applyOwnInboxSet(sequelize, [event], statement);
	await sqlQuery(sequelize, `WITH recorded AS (${recordSql(schema)}), inbox AS (SELECT event_id, CAST(:envelope AS jsonb) AS envelope FROM recorded) ${statement}`, {
		eventId: event.eventId,
		eventName: event.eventName,
		envelope: JSON.stringify(event),
	});
}

/** Runs `effect` once per eventId for this consumer (consumeBatchOnce for one event). */
export async function consumeOnce(
	sequelize: Sequelize,
	schema: string,
	event: Pick<DomainEvent, "eventId" | "eventName">,
	effect: (tx: Transaction) => Promise<void>,
	opts: { onRetry?: () => void; ownInbox?: boolean } = {},
): Promise<"processed" | "duplicate"> {
	return consumeBatchOnce(
		sequelize,
		schema,
		[event],
		async (tx, fresh) => {
			if (fresh.size === 0) return "duplicate";
			await effect(tx);
			return "processed";
		},
		opts,
	);
}

export interface DeadLetter {
	event?: DomainEvent;
	eventName: string;
	raw?: string;
	error: string;
	attempts: number;
}

export async function recordDeadLetter(sequelize: Sequelize, schema: string, letter: DeadLetter): Promise<void> {
	await sqlQuery(
		sequelize,
		`INSERT INTO ${quoteIdent(schema)}.dead_letters (event_id, event_name, envelope, raw, error, attempts) VALUES (:id, :name, :envelope, :raw, :error, :attempts)`,
		{
			id: letter.event?.eventId ?? null,
			name: letter.eventName,
			envelope: letter.event ? JSON.stringify(letter.event) : null,
			raw: letter.raw ?? null,
			error: letter.error.slice(0, 4000),
			attempts: letter.attempts,
		},
	);
}

export interface RetryPolicy {
	maxAttempts: number;
	baseDelayMs: number;
}

/**
 * Tries `attempt` up to `maxAttempts` times with exponential backoff, then hands the event to
 * `deadLetter` and returns, so the events behind it are never blocked for ever.
 */
export async function deliverWithRetries(
	event: DomainEvent,
	attempt: () => Promise<"processed" | "duplicate">,
	policy: RetryPolicy,
	deadLetter: (error: Error, attempts: number) => Promise<void>,
	logger: Logger,
): Promise<ConsumeOutcome> {
	for (let n = 1; ; n++) {
		try {
			return await attempt();
		} catch (err) {
			const error = err as Error;
			if (n >= policy.maxAttempts) {
				logger.error(`Event ${event.eventName} ${event.eventId} failed ${n} times, dead-lettered: ${error.message}`);
				await deadLetter(error, n);
				return "dead-lettered";
			}
			logger.warn(`Event ${event.eventName} ${event.eventId} failed (attempt ${n}/${policy.maxAttempts}): ${error.message}`);
			await sleep(backoffDelay(n, policy.baseDelayMs));
		}
	}
}
