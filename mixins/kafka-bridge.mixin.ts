import type { Service, ServiceSchema } from "moleculer";
import type { Consumer, IHeaders } from "kafkajs";
import { runtimeOf } from "../lib/runtime";
import type { OutboxMessage } from "../lib/events/relay";
import { OffsetCommits } from "../lib/events/offset-commits";

/** Receives raw Kafka records in their order; resolves once each is processed or dead-lettered. */
export type KafkaBatchHandler = (records: Array<{ topic: string; value: string }>) => Promise<void>;

export interface KafkaBridgeMethods {
	kafkaTopic(eventName: string): string;
	kafkaPublish(messages: OutboxMessage[]): Promise<void>;
	kafkaSubscribe(eventNames: string[], handle: KafkaBatchHandler, chunk: number): Promise<void>;
	kafkaDeadLetter(topic: string, value: string, error: Error, headers?: IHeaders): Promise<void>;
	kafkaUnsubscribe(): Promise<void>;
}
type BridgeService = Service & KafkaBridgeMethods & { kafkaConsumer?: Consumer; kafkaOffsets?: OffsetCommits };

/**
 * The Kafka side of the event backbone (SPEC section 7): topic = prefix + event name, key = the
 * aggregate id, the envelope as JSON value with `eventId`/`eventName` headers, the node's
 * idempotent producer; one consumer group per service that commits an offset only after the
 * handler's transaction committed (or the record went to `<topic>.dlq`), the offsets of all its
 * partitions together at most every `KAFKA_COMMIT_INTERVAL_MS`.
 */
export function KafkaBridgeMixin(): Partial<ServiceSchema> {
	return {
		methods: {
			kafkaTopic(this: BridgeService, eventName: string): string {
				return `${runtimeOf(this.broker).config.kafkaTopicPrefix}${eventName}`;
			},

			async kafkaPublish(this: BridgeService, messages: OutboxMessage[]): Promise<void> {
				const runtime = runtimeOf(this.broker);
				const records = messages.map(m => ({
					topic: this.kafkaTopic(m.event.eventName),
					message: { key: m.key, value: JSON.stringify(m.event), headers: { eventId: m.event.eventId, eventName: m.event.eventName } },
				}));
				await runtime.ensureTopics([...new Set(records.map(r => r.topic))]);
				await runtime.kafkaSend(records);
			},

			async kafkaSubscribe(this: BridgeService, eventNames: string[], handle: KafkaBatchHandler, chunk: number): Promise<void> {
				const runtime = runtimeOf(this.broker);
				const topics = eventNames.map(n => this.kafkaTopic(n));
				await runtime.ensureTopics(topics);
				const sessionTimeout = runtime.config.kafkaSessionTimeoutMs;
				const consumer = runtime.kafka()!.consumer({
					// SPEC section 7: group = service name. Clusters on one broker therefore share groups;
					// give each its own broker (or run them one at a time, as the tests do).
					groupId: this.name,
					sessionTimeout,
					heartbeatInterval: Math.floor(sessionTimeout / 10),
					rebalanceTimeout: sessionTimeout * 2,
					// A fetch long-polls this long on quiet topics, and disconnect() waits for it: a
					// node's graceful stop took 5 s (the default) for a service with quiet topics.
					maxWaitTimeInMs: 500,
				});
				this.kafkaConsumer = consumer;
				// One OffsetCommit request per chunk was about a fifth of the broker's CPU per checkout.
				const offsets = new OffsetCommits(
					list => consumer.commitOffsets(list),
					runtime.config.kafkaCommitIntervalMs,
					err => this.logger.warn(`Kafka offsets of ${this.name} not committed (their records come again, the inbox skips them): ${err.message}`),
				);
				this.kafkaOffsets = offsets;
				const { GROUP_JOIN, REBALANCING, CRASH } = consumer.events;
				consumer.on(GROUP_JOIN, e => this.logger.info(`Kafka group ${this.name} joined in ${e.payload.duration} ms`));
				consumer.on(REBALANCING, () => this.logger.warn(`Kafka group ${this.name} is rebalancing`));
				// kafkajs gives up on errors it deems fatal (e.g. "the coordinator is not aware of this
				// member" from a commit after an eviction) and leaves the service consuming nothing
				// until the node restarts: a burst once stalled the cluster that way. Start anew instead.
				consumer.on(CRASH, e => {
					this.logger.warn(`Kafka consumer of ${this.name} crashed: ${e.payload.error.message}${e.payload.restart ? "; kafkajs restarts it" : "; starting a new one"}`);
					if (e.payload.restart || this.kafkaConsumer !== consumer) return;
					setTimeout(() => {
						if (this.kafkaConsumer !== consumer) return; // stopped meanwhile
						this.kafkaSubscribe(eventNames, handle, chunk).catch(err => this.logger.error(`Kafka consumer of ${this.name} could not restart: ${(err as Error).message}`));
					}, 1000);
				});
				await consumer.connect();
				await consumer.subscribe({ topics, fromBeginning: true });
				await consumer.run({
					autoCommit: false,
					// Partitions run in parallel; records of one partition (one key) stay in order.
					partitionsConsumedConcurrently: 3,
					// The position advances only over handled records (no auto-resolve of the whole batch).
					eachBatchAutoResolve: false,
					eachBatch: async ({ batch, heartbeat, isRunning, isStale, resolveOffset }) => {
						const { topic, partition } = batch;
						// A fetched batch is handed over in chunks of at most `chunk` records (one transaction
						// each on the service's side), each chunk's offset committed after it (OffsetCommits): a
						// crash or rebalance redelivers what was not committed yet, which the inbox skips.
						for (let i = 0; i < batch.messages.length; i += chunk) {
							if (!isRunning() || isStale()) break;
							const messages = batch.messages.slice(i, i + chunk);
							// A chunk can take longer than the session timeout on a busy machine: without
							// heartbeats meanwhile the member would be evicted mid-chunk.
							const beat = setInterval(() => void heartbeat().catch(() => undefined), Math.max(100, Math.floor(sessionTimeout / 10)));
							try {
								await handle(messages.map(m => ({ topic, value: m.value?.toString("utf8") ?? "" })));
							} finally {
								clearInterval(beat);
							}
							const last = messages[messages.length - 1].offset;
							resolveOffset(last);
							await offsets.add({ topic, partition, offset: (BigInt(last) + 1n).toString() });
							await heartbeat();
						}
					},
				});
			},

			async kafkaDeadLetter(this: BridgeService, topic: string, value: string, error: Error, headers: IHeaders = {}): Promise<void> {
				const runtime = runtimeOf(this.broker);
				const dlq = `${topic}.dlq`;
				await runtime.ensureTopics([dlq]);
				await runtime.kafkaSend([{ topic: dlq, message: { value, headers: { ...headers, consumer: this.name, sourceTopic: topic, error: error.message.slice(0, 1000) } } }]);
			},

			async kafkaUnsubscribe(this: BridgeService): Promise<void> {
				const consumer = this.kafkaConsumer;
				const offsets = this.kafkaOffsets;
				this.kafkaConsumer = this.kafkaOffsets = undefined;
				// What was handled is committed before the group is left; disconnect() lets the chunk in
				// hand finish, and its offset is committed at once.
				await offsets?.close().catch(err => this.logger.warn(`Kafka offsets of ${this.name} not committed on leaving: ${(err as Error).message}`));
				await consumer?.disconnect();
			},
		},
	};
}
