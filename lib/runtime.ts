import type { ServiceBroker } from "moleculer";
import Redis from "ioredis";
import { Kafka, logLevel as KafkaLogLevel, type Admin, type Message, type Producer } from "kafkajs";
import { patchKafkajs } from "./kafkajs-patch";
import type { Config } from "./config";
import { openDatabase, type Database } from "./database";
import { LocalLocker, RedisLocker, type Locker } from "./locks";
import { BatchQueue } from "./batch";

/** At most this many records in one produce request (the relays hand over up to 200 each). */
const PRODUCE_BATCH_MAX = 500;

/**
 * Where a consumer group stands on one partition: the offset it consumes from (its committed one,
 * or with none yet the partition's beginning, as it subscribes fromBeginning) and the records
 * between that and the end.
 */
export function partitionLag(
	committed: Array<{ topic: string; partitions: Array<{ partition: number; offset: string }> }>,
	topic: string,
	end: { partition: number; high: string; low: string },
): { from: number; lag: number } {
	const at = Number(committed.find(c => c.topic === topic)?.partitions.find(p => p.partition === end.partition)?.offset ?? -1);
	const from = at >= 0 ? at : Number(end.low);
	return { from, lag: Math.max(0, Number(end.high) - from) };
}

/**
 * What one node shares between its services: the configuration, one database pool, one Redis
 * connection, one Kafka client and producer. Created lazily, so a node opens only what its
 * services use, and closed once when the broker stops.
 */
export class Runtime {
	shuttingDown = false;
	private db?: Promise<Database>;
	private redisClient?: Redis;
	private kafkaClient?: Kafka;
	private producer?: Promise<Producer>;
	private produceQueue?: BatchQueue<{ topic: string; message: Message }>;
	private admin?: Promise<Admin>;
	private readonly topics = new Set<string>();
	private lockerInstance?: Locker;

	constructor(
		readonly config: Config,
		readonly nodeID: string,
		/** What can no longer work (the embedded database failed): the node stops, so that it is restarted. */
		private readonly fatal: (message: string, err: Error) => void,
	) {}

	database(): Promise<Database> {
		this.db ??= openDatabase(this.config, err => this.fatal("The embedded database failed; the node stops, to be restarted on its files", err));
		return this.db;
	}

	/** True once a service asked for the database: readiness then checks it. */
	get usesDatabase(): boolean {
		return this.db !== undefined;
	}

	redis(): Redis | undefined {
		if (!this.config.redisUrl) return undefined;
		// Auto-pipelining: commands issued in one turn (the rate checks of requests read together,
		// Redlock's scripts) go in one write, and those issued while a write is in flight in the next.
		this.redisClient ??= new Redis(this.config.redisUrl, { maxRetriesPerRequest: 2, enableOfflineQueue: true, enableAutoPipelining: true });
		return this.redisClient;
	}

	kafka(): Kafka | undefined {
		if (!this.config.kafkaBrokers) return undefined;
		if (!this.kafkaClient) {
			patchKafkajs(); // before the node's first connection to the broker
			this.kafkaClient = new Kafka({
				clientId: `${this.config.namespace}-${this.nodeID}`,
				brokers: this.config.kafkaBrokers,
				logLevel: KafkaLogLevel.NOTHING,
				retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 2000 },
				connectionTimeout: 3000,
			});
		}
		return this.kafkaClient;
	}

	/** The node's idempotent producer (one per node: kafkajs sequences per producer id). */
	kafkaProducer(): Promise<Producer> {
		const kafka = this.kafka();
		if (!kafka) return Promise.reject(new Error("KAFKA_BROKERS is not set"));
		this.producer ??= (async () => {
			const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
			await producer.connect();
			return producer;
		})().catch(err => {
			this.producer = undefined;
			throw err;
		});
		return this.producer;
	}

	/**
	 * Sends records through the node's producer, acknowledged by all in-sync replicas. Records the
	 * node's relays hand over while a produce request is in flight go out together in the next one
	 * (the idempotent producer sends one request at a time anyway): fewer, larger requests under
	 * load, no wait when idle. Each topic's records keep their order.
	 */
	kafkaSend(records: Array<{ topic: string; message: Message }>): Promise<void> {
		this.produceQueue ??= new BatchQueue(async batch => {
			const pending = this.kafkaProducer();
			const producer = await pending;
			const byTopic = new Map<string, Message[]>();
			for (const { topic, message } of batch) {
				const messages = byTopic.get(topic);
				if (messages) messages.push(message);
				else byTopic.set(topic, [message]);
			}
			try {
				await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
			} catch (err) {
				// When one partition of a produce request fails, kafkajs winds back the sequence numbers
				// of all of them, those the broker wrote too: the producer's next batch of the same size
				// on such a partition is taken by the broker for a duplicate, acknowledged and dropped
				// (chaos lost a payment.authorized so after a Kafka restart). A new producer (a new
				// producer id) starts its sequences afresh; the failed records are sent again by their relay.
				if (this.producer === pending) this.producer = undefined;
				void producer.disconnect().catch(() => undefined);
				throw err;
			}
		}, PRODUCE_BATCH_MAX);
		return this.produceQueue.push(records);
	}

	private kafkaAdmin(): Promise<Admin> {
		const kafka = this.kafka();
		if (!kafka) return Promise.reject(new Error("KAFKA_BROKERS is not set"));
		this.admin ??= (async () => {
			const admin = kafka.admin();
			await admin.connect();
			return admin;
		})().catch(err => {
			this.admin = undefined;
			throw err;
		});
		return this.admin;
	}

	/** Creates the topics this node is about to use, once per node (existing ones are left alone). */
	async ensureTopics(topics: string[]): Promise<void> {
		const missing = topics.filter(t => !this.topics.has(t));
		if (missing.length === 0) return;
		const admin = await this.kafkaAdmin();
		try {
			await admin.createTopics({ topics: missing.map(topic => ({ topic })), waitForLeaders: false });
		} catch (err) {
			// Another node created one of them first: that is the state we wanted.
			if ((err as { type?: string }).type !== "TOPIC_ALREADY_EXISTS") throw err;
		}
		// A new topic is briefly unknown to the broker's metadata (KRaft): wait until every
		// partition has a leader rather than fail the first send or subscribe.
		const deadline = Date.now() + 15000;
		for (;;) {
			try {
				const { topics } = await admin.fetchTopicMetadata({ topics: missing });
				if (topics.every(t => t.partitions.length > 0 && t.partitions.every(p => p.leader >= 0))) break;
			} catch (err) {
				if (!(err as { retriable?: boolean }).retriable || Date.now() > deadline) throw err;
			}
			if (Date.now() > deadline) throw new Error(`Kafka topics ${missing.join(", ")} have no leader after 15 s`);
			await new Promise(resolve => setTimeout(resolve, 200));
		}
		missing.forEach(t => this.topics.add(t));
	}

	/**
	 * How far consumer group `groupId` is behind on event topics `eventNames`: records not yet
	 * committed, and its committed position (a sum of offsets: it changes when the group moves on).
	 */
	async consumerLag(groupId: string, eventNames: string[]): Promise<ConsumerLag> {
		const admin = await this.kafkaAdmin();
		const topics = eventNames.map(n => `${this.config.kafkaTopicPrefix}${n}`);
		const committed = await admin.fetchOffsets({ groupId, topics });
		const ends = await Promise.all(topics.map(t => admin.fetchTopicOffsets(t)));
		let lag = 0;
		let position = 0;
		topics.forEach((topic, i) => {
			for (const end of ends[i]) {
				const at = partitionLag(committed, topic, end);
				lag += at.lag;
				position += at.from;
			}
		});
		return { lag, position };
	}

	/** Readiness probe of the Kafka cluster this node uses. */
	async pingKafka(): Promise<void> {
		await (await this.kafkaAdmin()).describeCluster();
	}

	/** Redlock when Redis is configured (many nodes), else an in-process lock (one node). */
	locker(): Locker {
		const redis = this.redis();
		this.lockerInstance ??= redis ? new RedisLocker(redis, `${this.config.namespace}:lock:`) : new LocalLocker();
		return this.lockerInstance;
	}

	/** The broker has started every local service (their migrations ran). */
	async started(): Promise<void> {
		(await this.db)?.started();
	}

	async close(): Promise<void> {
		const producer = this.producer;
		this.producer = undefined;
		await producer?.then(p => p.disconnect()).catch(() => undefined);
		const admin = this.admin;
		this.admin = undefined;
		await admin?.then(a => a.disconnect()).catch(() => undefined);
		this.redisClient?.disconnect();
		const db = this.db;
		this.db = undefined;
		if (db) await (await db).close();
	}
}

export interface ConsumerLag {
	lag: number;
	position: number;
}

const runtimes = new WeakMap<ServiceBroker, Runtime>();

export function attachRuntime(broker: ServiceBroker, runtime: Runtime): void {
	runtimes.set(broker, runtime);
}

export function runtimeOf(broker: ServiceBroker): Runtime {
	const runtime = runtimes.get(broker);
	if (!runtime) throw new Error(`broker ${broker.nodeID} was not created by createNode()`);
	return runtime;
}
