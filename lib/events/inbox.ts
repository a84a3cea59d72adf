import type { Sequelize } from "sequelize";
import type { Logger } from "moleculer";
import { quoteIdent } from "../migrations";
import type { DomainEvent } from "./envelope";
import { backoffDelay, sleep } from "./backoff";
import { inTransaction, type Transaction } from "../transactions";
import { sqlQuery } from "../sql";

export type ConsumeOutcome = "processed" | "duplicate" | "dead-lettered";

/** Records `(consumer, :eventId)`; returns the id only when the event is new to this consumer. */
const recordSql = (schema: string) =>
	`INSERT INTO ${quoteIdent(schema)}.processed_events (event_id, event_name) VALUES (:eventId, :eventName) ON CONFLICT (event_id) DO NOTHING RETURNING event_id`;

/**
 * Records a batch's events in one statement, inside the batch's transaction: the ids new to this
 * consumer come back (an id seen before, or twice in the batch, comes back at most once).
 */
export async function recordBatch(sequelize: Sequelize, schema: string, events: DomainEvent[], tx: Transaction): Promise<Set<string>> {
	const rows = await sqlQuery<{ event_id: string }>(
		sequelize,
		`INSERT INTO ${quoteIdent(schema)}.processed_events (event_id, event_name)
		 SELECT * FROM unnest(ARRAY[:ids]::uuid[], ARRAY[:names]::text[]) ON CONFLICT (event_id) DO NOTHING RETURNING event_id`,
		{ ids: events.map(e => e.eventId), names: events.map(e => e.eventName) },
		tx,
	);
	return new Set(rows.map(r => r.event_id));
}

/**
 * A set-based handler's SQL for events whose inbox records are already written: `inbox` holds one
 * row `(event_id, envelope)` per event (replacements `ids`, `envelopes`).
 */
export const knownNewSet = (statement: string) => `WITH inbox AS (SELECT * FROM unnest(ARRAY[:ids]::uuid[], ARRAY[:envelopes]::jsonb[]) AS inbox (event_id, envelope)) ${statement}`;

/** A set-based handler's SQL for one event, its inbox record written in the same statement (it takes effect only if new). */
export async function consumeSetOnce(sequelize: Sequelize, schema: string, event: DomainEvent, statement: string): Promise<void> {
	await sqlQuery(sequelize, `WITH recorded AS (${recordSql(schema)}), inbox AS (SELECT event_id, CAST(:envelope AS jsonb) AS envelope FROM recorded) ${statement}`, {
		eventId: event.eventId,
		eventName: event.eventName,
		envelope: JSON.stringify(event),
	});
}

/**
 * Runs `effect` once per eventId for this consumer: the `(consumer, eventId)` record and the
 * effect commit in one transaction, so a redelivered event finds the record and does nothing.
 * (Each service has its own schema, so the schema is the consumer.)
 */
export async function consumeOnce(
	sequelize: Sequelize,
	schema: string,
	event: Pick<DomainEvent, "eventId" | "eventName">,
	effect: (tx: Transaction) => Promise<void>,
): Promise<"processed" | "duplicate"> {
	return inTransaction(sequelize, async tx => {
		const inserted = await sqlQuery(sequelize, recordSql(schema), { eventId: event.eventId, eventName: event.eventName }, tx);
		if (inserted.length === 0) return "duplicate";
		await effect(tx);
		return "processed";
	});
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
