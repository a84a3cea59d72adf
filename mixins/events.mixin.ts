import type { Context, ServiceSchema } from "moleculer";
import { runtimeOf } from "../lib/runtime";
import { runMigrations } from "../lib/migrations";
import type { Transaction } from "../lib/transactions";
import { queueSql } from "../lib/sql";
import { lockedFor } from "./redlock.mixin";
import { countMetric, observeMetric, setMetric } from "../lib/metrics";
import { EVENT_TABLE_MIGRATIONS } from "../lib/events/tables";
import { isDomainEvent, traceOf, type DomainEvent, type PublishOptions } from "../lib/events/envelope";
import type { EventName, EventOf, EventPayloads } from "../lib/events/catalogue";
import { OutboxRelay, writeToOutbox, type OutboxMessage, type Publisher } from "../lib/events/relay";
import { applyOwnInboxSet, consumeBatchOnce, consumeOnce, consumeSetOnce, deliverWithRetries, inboxRows, knownNewSet, recordDeadLetter, type ConsumeOutcome } from "../lib/events/inbox";
import { BatchQueue, applyBisecting } from "../lib/batch";
import { KafkaBridgeMixin, type KafkaBridgeMethods, type KafkaBatchHandler } from "./kafka-bridge.mixin";
import { bindContext, contextOf, readAheadRetried, type DbService } from "./db.mixin";
import { NotFoundError, BusinessRuleError } from "../lib/errors";
import { pageParams } from "../lib/paging";

export interface EventsMethods {
	/** Writes an event to the outbox within `tx` (inserted with the transaction's other events just before it commits). */
	publishEvent<N extends EventName>(tx: Transaction, eventName: N, data: EventPayloads[N], opts?: PublishOptions): DomainEvent;
	receiveDomainEvent(event: unknown, ctx: Context): Promise<ConsumeOutcome>;
	receiveBatch(deliveries: Delivery[]): Promise<void>;
	applyBatch(batch: Valid[]): Promise<void>;
	deliverOne(valid: Valid): Promise<ConsumeOutcome>;
	outboxBacklog(): Promise<number>;
}
export type EventsService = DbService & EventsMethods & KafkaBridgeMethods & { relay?: OutboxRelay; batches?: BatchQueue<Delivery> };

/** An event as it arrived, with the context its handling runs in. */
interface Delivery {
	event: unknown;
	ctx: Context;
}
/** A delivery whose envelope is valid and whose handler is known. */
interface Valid {
	event: DomainEvent;
	ctx: Context;
	declared: DeclaredHandler;
}

/**
 * A stand-in for the context that produced an event, so that the context of its handling continues
 * the same trace (request ID) under the producer's span.
 */
function traceParent(broker: import("moleculer").ServiceBroker, event: DomainEvent): Context | undefined {
	if (!event.trace) return undefined;
	const parent = broker.ContextFactory.create(broker);
	parent.id = event.trace.parentID;
	parent.requestID = event.trace.requestID;
	parent.tracing = broker.isTracingEnabled();
	return parent;
}

/** A domain event handler: runs inside the transaction that also records the event as processed. */
export type DomainEventHandler<E extends DomainEvent = DomainEvent> = (this: EventsService, event: E, tools: { tx: Transaction; ctx: Context }) => Promise<void>;

/** A handler of one event at a time, with options: locks (taken before its transaction opens, freed after it ends), `concerns`. */
export interface HandlerWithOptions<E extends DomainEvent = DomainEvent> extends Concerns<E> {
	lock?: (event: E) => string[];
	handle: DomainEventHandler<E>;
}

/**
 * A handler that is one statement for any number of events: its SQL reads the CTE `inbox`, one row
 * `(event_id uuid, envelope jsonb)` per new event, and takes effect only through it. A batch's run
 * of such events costs one statement (the audit log: one multi-row insert per batch).
 */
export interface SetStatementHandler extends OwnInbox, Concerns {
	setStatement: (this: EventsService) => string;
}

/** A handler that can tell from an event alone that it has nothing to do. */
export interface Concerns<E extends DomainEvent = DomainEvent> {
	/**
	 * Whether the event can have an effect here (from its data and the service's settings alone).
	 * One that cannot is acknowledged without a transaction or an inbox record: it would change
	 * nothing, the first time or again (the voucher service and an order that holds no voucher).
	 */
	concerns?: (this: EventsService, event: E) => boolean;
}

/** A handler whose effect is idempotent by event id needs no inbox record. */
export interface OwnInbox {
	/**
	 * The handler is its own inbox: it writes one row per event into a table unique on its
	 * event_id, `ON CONFLICT (event_id) DO NOTHING`, and what else it writes is the same when
	 * written again, so an event seen before has no second effect without an inbox record. A batch
	 * of only such events keeps no records; a set statement's batch is then that one statement,
	 * with no transaction around it (the audit log: 8–9 events per checkout).
	 */
	ownInbox?: true;
}

/**
 * A handler that takes a batch's events at once (its run of consecutive events for this handler,
 * in arrival order) inside the batch's transaction: it locks and reads what they touch once and
 * writes their effects as set-based SQL. Declare one object for several events to get them as
 * one run. `lock`, if given, names the distributed locks an event needs (taken before the
 * transaction, for the whole batch).
 */
export interface BatchHandler<E extends DomainEvent = DomainEvent> extends OwnInbox, Concerns<E> {
	/** `contexts[i]` is the context of `events[i]`'s handling (it continues the event's trace). */
	batch: (this: EventsService, events: E[], tools: { tx: Transaction; contexts: Context[] }) => Promise<void>;
	lock?: (event: E) => string[];
}

type DeclaredHandler = DomainEventHandler | HandlerWithOptions | SetStatementHandler | BatchHandler;
/** Handlers whose consecutive events in a batch are applied together. */
type RunHandler = SetStatementHandler | BatchHandler;
const isRunHandler = (declared: DeclaredHandler): declared is RunHandler => typeof declared === "object" && ("setStatement" in declared || "batch" in declared);

/** A handler of the event `N`: it reads the event's data typed by its name (lib/events/catalogue). */
export const typedHandler = <N extends EventName>(handler: BatchHandler<EventOf<N>> | HandlerWithOptions<EventOf<N>> | DomainEventHandler<EventOf<N>>): DeclaredHandler => handler as unknown as DeclaredHandler;

export interface EventsMixinOptions {
	/** Event name → handler. Declared once; Kafka or the Moleculer bus carries them. */
	handlers?: Record<string, DeclaredHandler>;
	/**
	 * The service is an event sink: nothing waits on its effects (the audit log, notifications). Under
	 * load its batches follow one another at most every SINK_BATCH_INTERVAL_MS, so they are fewer
	 * and larger; an event that finds it idle is still handled at once.
	 */
	sink?: true;
}

/** How long an event took from its occurrence to its handling (consumer lag, either transport). */
const observeDelay = (service: EventsService, event: DomainEvent) =>
	observeMetric(service.broker, "eventDelay", { service: service.name, event: event.eventName }, Math.max(0, (Date.now() - Date.parse(event.occurredAt)) / 1000));

const isOwnInbox = (declared: DeclaredHandler) => typeof declared === "object" && "ownInbox" in declared && declared.ownInbox === true;

/** The handler of every event of the batch, if it is one set statement that is its own inbox. */
const oneSetStatement = (batch: Valid[]): SetStatementHandler | undefined => {
	const { declared } = batch[0];
	return "setStatement" in declared && isOwnInbox(declared) && batch.every(b => b.declared === declared) ? declared : undefined;
};

/** Whether `event` may have an effect for its handler; one whose test throws (a malformed payload) is handled, and dead-lettered if it fails there. */
function concerned(service: EventsService, declared: DeclaredHandler, event: DomainEvent): boolean {
	try {
		return typeof declared === "function" || declared.concerns?.call(service, event) !== false;
	} catch {
		return true;
	}
}

const handlerOf = (declared: DomainEventHandler | HandlerWithOptions) => (typeof declared === "function" ? declared : declared.handle);

/** How one delivery of `event` is attempted: once per eventId, under the handler's locks if any. */
function attemptFor(service: EventsService, declared: DeclaredHandler, event: DomainEvent, ctx: Context): () => Promise<"processed" | "duplicate"> {
	if ("setStatement" in declared) {
		return async () => {
			await consumeSetOnce(service.sequelize, service.name, event, declared.setStatement.call(service), { ownInbox: declared.ownInbox });
			return "processed";
		};
	}
	if ("batch" in declared) {
		const once = () => consumeOnce(service.sequelize, service.name, event, tx => declared.batch.call(service, [event], { tx, contexts: [ctx] }), { onRetry: readAheadRetried(service), ownInbox: declared.ownInbox });
		return declared.lock ? () => lockedFor(service.broker, service.name, declared.lock!(event), once) : once;
	}
	const handler = handlerOf(declared);
	const once = () =>
		consumeOnce(
			service.sequelize,
			service.name,
			event,
			tx => {
				bindContext(tx, ctx);
				return handler.call(service, event, { tx, ctx });
			},
			{ onRetry: readAheadRetried(service) },
		);
	// Locks before the transaction, as everywhere: no holder ever waits on a lock inside one.
	const lock = typeof declared === "function" ? undefined : declared.lock;
	return lock ? () => lockedFor(service.broker, service.name, lock(event), once) : once;
}

/**
 * The event backbone of a service (SPEC section 7): `publishEvent` writes to the service's outbox
 * in the caller's transaction; a relay publishes after commit (to Kafka with KAFKA_BROKERS, else
 * as balanced Moleculer events); handlers run once per eventId in their own transaction, are
 * retried with backoff and then dead-lettered. Needs DbMixin on the same service.
 */
export function EventsMixin(opts: EventsMixinOptions = {}): Partial<ServiceSchema> {
	const handlers = opts.handlers ?? {};
	const eventNames = Object.keys(handlers);
	return {
		mixins: [KafkaBridgeMixin()],
		// The bus transport: a balanced event reaches one node of each consuming service.
		events: Object.fromEntries(
			eventNames.map(name => [
				name,
				function (this: EventsService, ctx: Context) {
					return this.batches!.push([{ event: ctx.params, ctx }]);
				},
			]),
		),
		actions: {
			/** Operators: what this service could not handle (newest first). */
			deadLetters: {
				params: { ...pageParams, pending: { type: "boolean", optional: true, convert: true } },
				async handler(ctx: Context<{ page: number; pageSize: number; pending?: boolean }>) {
					const self = this as unknown as EventsService;
					const query = { table: self.table("dead_letters"), where: ctx.params.pending ? "replayed_at IS NULL" : undefined, orderBy: "id DESC", columns: "id, event_id, event_name, error, attempts, created_at, replayed_at" };
					return self.paged(query, {}, ctx.params, (r: Record<string, any>) => ({
						id: Number(r.id),
						eventId: r.event_id,
						eventName: r.event_name,
						error: r.error,
						attempts: r.attempts,
						createdAt: new Date(r.created_at).toISOString(),
						replayedAt: r.replayed_at ? new Date(r.replayed_at).toISOString() : null,
					}));
				},
			},
			/** Operators: hands a dead letter to its handler again (once it is fixed); a new failure is a new dead letter. */
			replayDeadLetter: {
				params: { id: { type: "number", integer: true, positive: true, convert: true } },
				retryPolicy: { enabled: false },
				async handler(ctx: Context<{ id: number }>) {
					const self = this as unknown as EventsService;
					const [letter] = await self.sql<{ envelope: unknown; replayed_at: Date | null }>(
						`UPDATE ${self.table("dead_letters")} SET replayed_at = now() WHERE id = :id AND replayed_at IS NULL AND envelope IS NOT NULL RETURNING envelope, replayed_at`,
						{ id: ctx.params.id },
					);
					if (!letter) {
						const [exists] = await self.sql(`SELECT 1 FROM ${self.table("dead_letters")} WHERE id = :id`, { id: ctx.params.id });
						if (!exists) throw new NotFoundError("Dead letter", ctx.params);
						throw new BusinessRuleError("NOT_REPLAYABLE", "Replayed already, or not a domain event");
					}
					return { outcome: await self.receiveDomainEvent(letter.envelope, ctx) };
				},
			},
			/** Operators: events written but not yet published. */
			outboxBacklog() {
				return (this as unknown as EventsService).outboxBacklog();
			},
		},
		methods: {
			publishEvent<N extends EventName>(this: EventsService, tx: Transaction, eventName: N, data: EventPayloads[N], publishOpts?: PublishOptions) {
				const ctx = contextOf(tx);
				const trace = ctx ? traceOf(ctx) : undefined;
				const event = writeToOutbox(this.sequelize, this.name, tx, eventName, data, { service: this.name, nodeID: this.broker.nodeID }, { trace, ...publishOpts });
				tx.afterCommit(() => this.relay?.committed(event));
				return event;
			},

			/** One event on its own (a dead letter replayed): dead-lettered at once if it is not a valid envelope. */
			async receiveDomainEvent(this: EventsService, event: unknown, ctx: Context): Promise<ConsumeOutcome> {
				const eventName = isDomainEvent(event) ? event.eventName : "unknown";
				const declared = handlers[eventName];
				if (!isDomainEvent(event) || !declared) {
					await recordDeadLetter(this.sequelize, this.name, { eventName, raw: JSON.stringify(event), error: "not a valid domain event", attempts: 1 });
					return "dead-lettered";
				}
				observeDelay(this, event);
				return this.deliverOne({ event, ctx, declared });
			},

			/**
			 * The events that were waiting, as one batch: the invalid ones dead-lettered, the rest applied
			 * in one transaction (applyBatch), a failing batch split until the failing event stands alone
			 * and takes its own retries and dead letter (deliverOne).
			 */
			async receiveBatch(this: EventsService, deliveries: Delivery[]): Promise<void> {
				const valid: Valid[] = [];
				for (const { event, ctx } of deliveries) {
					const declared = isDomainEvent(event) ? handlers[event.eventName] : undefined;
					if (!declared) {
						await this.receiveDomainEvent(event, ctx); // dead-lettered: not an envelope, or no handler
						continue;
					}
					observeDelay(this, event as DomainEvent);
					if (!concerned(this, declared, event as DomainEvent)) continue;
					valid.push({ event: event as DomainEvent, ctx, declared });
				}
				await applyBisecting(valid, batch => this.applyBatch(batch), async one => void (await this.deliverOne(one)));
			},

			/**
			 * A batch in one transaction: the inbox records of all its events in one statement, then each
			 * new event's handler in arrival order (duplicates, earlier or within the batch, are skipped),
			 * under the union of the handlers' locks, taken once before the transaction opens.
			 */
			async applyBatch(this: EventsService, batch: Valid[]): Promise<void> {
				const single = oneSetStatement(batch);
				if (single) return applyOwnInboxSet(this.sequelize, batch.map(b => b.event), single.setStatement.call(this));
				const ownInbox = batch.every(({ declared }) => isOwnInbox(declared));
				const keys = batch.flatMap(({ event, declared }) => ("lock" in declared && declared.lock ? declared.lock(event) : []));
				const apply = () =>
					consumeBatchOnce(this.sequelize, this.name, batch.map(b => b.event), async (tx, fresh) => {
						// A run of events for the same set-based or batch handler is applied at once, at its place in the order.
						let run: { declared: RunHandler; events: DomainEvent[]; contexts: Context[] } | undefined;
						const flush = async () => {
							if (!run) return;
							const { declared, events, contexts } = run;
							run = undefined;
							if ("batch" in declared) await declared.batch.call(this, events, { tx, contexts });
							// Nothing reads a set statement's result: it goes with the batch's next statement or its COMMIT.
							else queueSql(this.sequelize, tx, knownNewSet(declared.setStatement.call(this)), inboxRows(events));
						};
						for (const { event, ctx, declared } of batch) {
							if (!fresh.delete(event.eventId)) continue;
							if (isRunHandler(declared)) {
								if (run && run.declared !== declared) await flush();
								run ??= { declared, events: [], contexts: [] };
								run.events.push(event);
								run.contexts.push(ctx);
								continue;
							}
							await flush();
							bindContext(tx, ctx);
							await handlerOf(declared).call(this, event, { tx, ctx });
						}
						await flush();
					}, { onRetry: readAheadRetried(this), ownInbox });
				await (keys.length > 0 ? lockedFor(this.broker, this.name, keys, apply) : apply());
			},

			/** One valid event: tried up to EVENT_MAX_ATTEMPTS times with backoff, then dead-lettered. */
			async deliverOne(this: EventsService, { event, ctx, declared }: Valid): Promise<ConsumeOutcome> {
				const runtime = runtimeOf(this.broker);
				const eventName = event.eventName;
				return deliverWithRetries(
					event,
					attemptFor(this, declared, event, ctx),
					{ maxAttempts: runtime.config.eventMaxAttempts, baseDelayMs: 100 },
					async (error, attempts) => {
						await recordDeadLetter(this.sequelize, this.name, { event, eventName, error: error.message, attempts });
						countMetric(this.broker, "deadLetters", { service: this.name, event: eventName });
						if (runtime.kafka()) {
							await this.kafkaDeadLetter(this.kafkaTopic(eventName), JSON.stringify(event), error, { eventId: event.eventId, eventName });
						}
					},
					this.logger,
				);
			},

			outboxBacklog(this: EventsService): Promise<number> {
				return this.relay ? this.relay.backlog() : Promise.resolve(0);
			},
		},

		created() {
			// Events that arrive while a batch is in flight form the next one (see BatchQueue).
			const { config } = runtimeOf(this.broker);
			this.batches = new BatchQueue<Delivery>(deliveries => this.receiveBatch(deliveries), config.eventBatchMax, opts.sink ? config.sinkBatchIntervalMs : 0);
		},

		async started() {
			const runtime = runtimeOf(this.broker);
			await this.prepareDatabase();
			await runMigrations(this.sequelize, this.name, EVENT_TABLE_MIGRATIONS);
			const kafka = runtime.kafka() !== undefined;
			const publish: Publisher = kafka
				? (messages: OutboxMessage[]) => this.kafkaPublish(messages)
				: {
						// Resolves once this node's consumers handled them and the other nodes' were sent (fire and forget), rejects if a send failed.
						handOver: events => Promise.all(events.map(event => this.broker.emit(event.eventName, event, { parentCtx: traceParent(this.broker, event), throwError: true }))),
					};
			// Embedded, the node is the database's one process: its commits can be handed over as they happen.
			const mode = !kafka && !runtime.config.databaseUrl ? "direct" : "rounds";
			this.relay = new OutboxRelay(this.sequelize, this.name, publish, this.logger, runtime.config.outboxPollMs, backlog => setMetric(this.broker, "outboxBacklog", { service: this.name }, backlog), mode);
			// On the bus, once every service of the node has started: a consumer registers its handlers
			// only then, and an event handed over to no one would be marked published all the same.
			if (kafka || this.broker.started) this.relay.start();
			else this.broker.localBus.once("$broker.started", () => this.relay?.start());
			if (kafka && eventNames.length > 0) {
				const onRecords: KafkaBatchHandler = async records => {
					const deliveries = records.map(({ value }) => {
						let event: unknown;
						try {
							event = JSON.parse(value);
						} catch {
							event = { unparsable: value };
						}
						const ctx = this.broker.ContextFactory.create(this.broker, undefined as any, {}, { parentCtx: isDomainEvent(event) ? traceParent(this.broker, event) : undefined });
						ctx.eventName = isDomainEvent(event) ? event.eventName : null;
						// The span Moleculer opens for a bus event, opened here for a Kafka record.
						const span = this.broker.isTracingEnabled()
							? ctx.startSpan(`event '${ctx.eventName}' in '${this.name}'`, { id: ctx.id, type: "event", traceID: ctx.requestID, parentID: ctx.parentID, sampled: true, service: { name: this.name }, tags: { event: ctx.eventName, transport: "kafka" } })
							: undefined;
						return { event, ctx, span };
					});
					try {
						await this.batches!.push(deliveries.map(({ event, ctx }) => ({ event, ctx })));
					} finally {
						for (const { ctx, span } of deliveries) if (span) ctx.finishSpan(span);
					}
					// A record that is no envelope at all also goes to the topic's DLQ, as it came.
					for (const [i, { event }] of deliveries.entries()) {
						if (!isDomainEvent(event)) await this.kafkaDeadLetter(records[i].topic, records[i].value, new Error("not a valid domain event"));
					}
				};
				await this.kafkaSubscribe(eventNames, onRecords, runtime.config.eventBatchMax);
			}
		},

		async stopped() {
			await this.kafkaUnsubscribe();
			await this.relay?.stop();
		},
	};
}
