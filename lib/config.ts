/**
 * The node's configuration, parsed and checked in one place (SPEC section 8).
 * Every problem names its variable, so a bad setting stops the node with one clear line.
 */

export const ALL_SERVICES = [
	"gateway",
	"order",
	"validation",
	"inventory",
	"payment",
	"wallet",
	"voucher",
	"notification",
	"audit",
] as const;
export type ServiceName = (typeof ALL_SERVICES)[number];

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"] as const;
export const TRACING_EXPORTERS = ["none", "console", "zipkin", "jaeger", "event"] as const;

/** Outside production a known secret keeps `npm start` one command; production refuses it. */
export const DEV_JWT_SECRET = "dev-only-insecure-secret-change-me";
/** The same for the payment gateway's webhook signatures (the mock signs with it by default). */
export const DEV_WEBHOOK_SECRET = "whsec_dev_only_insecure_change_me";

export interface Config {
	production: boolean;
	nodeID?: string;
	namespace: string;
	transporter?: string;
	services: ServiceName[];
	databaseUrl?: string;
	dataDir: string;
	/** Embedded only: a file where PGlite's time per statement is kept (lib/pglite-profile.ts). */
	pgliteProfile?: string;
	dbPoolMax: number;
	redisUrl?: string;
	kafkaBrokers?: string[];
	kafkaTopicPrefix: string;
	kafkaSessionTimeoutMs: number;
	/** A consumer commits its partitions' offsets at most this often, together (0: after every chunk). */
	kafkaCommitIntervalMs: number;
	paymentGatewayUrl?: string;
	paymentTimeoutMs: number;
	paymentRetries: number;
	paymentAbandonMs: number;
	refundMaxAttempts: number;
	paymentBreakerThreshold: number;
	paymentBreakerOpenMs: number;
	refundRetryBaseMs: number;
	/** Verifies the gateway's webhooks; unset in production: hosted payment sessions are off. */
	paymentWebhookSecret?: string;
	/** The origins a hosted session may send the customer back to (never an open redirect). */
	paymentRedirectOrigins: string[];
	/** A hosted session's life, never past the order's stock reservation. */
	paymentSessionTtlMs: number;
	/** Where the in-process mock gateway sends its webhooks (default: this node's own gateway). */
	mockGatewayWebhookUrl?: string;
	port: number;
	rateLimit: number;
	rateLimitWindowMs: number;
	corsOrigins?: string[];
	bodyLimitBytes: number;
	/** A request's headers must arrive within this, and the whole request within the next: slow or stalled clients are cut with 408. */
	httpHeadersTimeoutMs: number;
	httpRequestTimeoutMs: number;
	jwtSecret: string;
	smtpUrl?: string;
	logLevel: (typeof LOG_LEVELS)[number];
	tracingExporter: (typeof TRACING_EXPORTERS)[number];
	tracingEndpoint?: string;
	metricsPort: number;
	/** A node's own /health/* listener (for nodes without the gateway); 0: none. */
	healthPort: number;
	requestTimeoutMs: number;
	/** Seconds without a heartbeat before a node counts as gone (its pending requests go elsewhere). */
	heartbeatTimeoutS: number;
	reservationTtlMs: number;
	/** 0: no sweep (expired reservations are then released when a payment or the watchdog meets them). */
	reservationSweepMs: number;
	sagaStepTimeoutMs: number;
	storeCurrency: string;
	voucherThresholdCents: number;
	voucherAmountCents: number;
	voucherTtlDays: number;
	eventMaxAttempts: number;
	/** Most events a consumer handles in one transaction (1: one at a time). */
	eventBatchMax: number;
	/** Event sinks (audit log, notifications): at least this long between two batches in a row (0: off). */
	sinkBatchIntervalMs: number;
	outboxPollMs: number;
	/** Embedded only: how often PGlite, which has no autovacuum, is vacuumed. */
	embeddedVacuumMs: number;
	/** Embedded only: WAL written since the last checkpoint (MB) that makes the housekeeping take one (PGlite has no checkpointer). */
	embeddedCheckpointMb: number;
	/** Embedded only: once the node has started, PGlite working this long on one message counts as hung, and the node stops (PostgreSQL's statement_timeout does not work in PGlite). */
	embeddedStuckMs: number;
	lockTtlMs: number;
	lockWaitMs: number;
	shutdownDrainMs: number;
}

export class ConfigError extends Error {
	constructor(
		readonly variable: string,
		problem: string,
	) {
		super(`${variable}: ${problem}`);
		this.name = "ConfigError";
	}
}

type Env = Record<string, string | undefined>;

/** Reads one variable; empty strings count as unset so `FOO=` in a .env file means "default". */
function read(env: Env, name: string): string | undefined {
	const value = env[name]?.trim();
	return value === "" ? undefined : value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
	const raw = read(env, name);
	if (raw === undefined) return fallback;
	if (!/^-?\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
	const value = Number(raw);
	if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
	return value;
}

function oneOf<T extends readonly string[]>(env: Env, name: string, allowed: T, fallback: T[number]): T[number] {
	const raw = read(env, name)?.toLowerCase();
	if (raw === undefined) return fallback;
	if (!allowed.includes(raw)) throw new ConfigError(name, `must be one of ${allowed.join(", ")}, got "${raw}"`);
	return raw;
}

function url(env: Env, name: string, protocols: string[]): string | undefined {
	const raw = read(env, name);
	if (raw === undefined) return undefined;
	let parsed: URL;
	try {
		parsed = new URL(raw);
	} catch {
		throw new ConfigError(name, `is not a URL: "${raw}"`);
	}
	if (!protocols.includes(parsed.protocol)) {
		throw new ConfigError(name, `must be a ${protocols.map(p => p + "//").join(" or ")} URL, got "${raw}"`);
	}
	if (!parsed.hostname && parsed.protocol !== "file:") throw new ConfigError(name, `has no host: "${raw}"`);
	return raw;
}

function services(env: Env): ServiceName[] {
	const raw = read(env, "SERVICES");
	if (raw === undefined || raw === "*") return [...ALL_SERVICES];
	if (raw === "none") return []; // a node that only joins: the REPL, a test client
	const names = raw.split(",").map(s => s.trim()).filter(Boolean);
	const unknown = names.filter(n => !(ALL_SERVICES as readonly string[]).includes(n));
	if (unknown.length > 0) {
		throw new ConfigError("SERVICES", `unknown service "${unknown[0]}" (known: ${ALL_SERVICES.join(", ")})`);
	}
	return [...new Set(names)] as ServiceName[];
}

function kafkaBrokers(env: Env): string[] | undefined {
	const raw = read(env, "KAFKA_BROKERS");
	if (raw === undefined) return undefined;
	const brokers = raw.split(",").map(s => s.trim()).filter(Boolean);
	for (const broker of brokers) {
		if (!/^[A-Za-z0-9.\-[\]:]+:\d{1,5}$/.test(broker)) {
			throw new ConfigError("KAFKA_BROKERS", `expects host:port[,host:port], got "${broker}"`);
		}
	}
	return brokers;
}

/** A signing secret: unset, or at least 16 characters. */
function secret(env: Env, name: string): string | undefined {
	const value = read(env, name);
	if (value !== undefined && value.length < 16) throw new ConfigError(name, "must be at least 16 characters");
	return value;
}

/** A comma list of origins (`https://shop.example.com`), and `*` where `star` allows it. */
function origins(env: Env, name: string, star: boolean): string[] | undefined {
	const raw = read(env, name);
	if (raw === undefined) return undefined;
	const list = raw.split(",").map(s => s.trim()).filter(Boolean);
	for (const o of list) {
		if (!(star && o === "*") && !/^https?:\/\/[^/\s]+$/.test(o)) throw new ConfigError(name, `expects ${star ? "* or " : ""}origins like https://shop.example.com, got "${o}"`);
	}
	return list;
}

/** Parses the environment; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
	const production = read(env, "NODE_ENV") === "production";
	const jwtSecret = secret(env, "JWT_SECRET");
	if (production && jwtSecret === undefined) {
		throw new ConfigError("JWT_SECRET", "is required when NODE_ENV=production");
	}
	const storeCurrency = (read(env, "STORE_CURRENCY") ?? "EUR").toUpperCase();
	if (!/^[A-Z]{3}$/.test(storeCurrency)) {
		throw new ConfigError("STORE_CURRENCY", `must be an ISO 4217 code such as EUR, got "${storeCurrency}"`);
	}
	const namespace = read(env, "NAMESPACE") ?? "checkout";
	if (!/^[A-Za-z0-9_-]+$/.test(namespace)) {
		throw new ConfigError("NAMESPACE", `may hold letters, digits, "-" and "_" only, got "${namespace}"`);
	}
	const tracingExporter = oneOf(env, "TRACING_EXPORTER", TRACING_EXPORTERS, "none");
	const webhookSecret = secret(env, "PAYMENT_WEBHOOK_SECRET");
	const port = integer(env, "PORT", 3000, 0, 65535);

	const config: Config = {
		production,
		nodeID: read(env, "NODE_ID"),
		namespace,
		transporter: url(env, "TRANSPORTER", ["nats:", "tls:"]),
		services: services(env),
		databaseUrl: url(env, "DATABASE_URL", ["postgres:", "postgresql:"]),
		dataDir: read(env, "DATA_DIR") ?? "./data",
		pgliteProfile: read(env, "PGLITE_PROFILE"),
		dbPoolMax: integer(env, "DB_POOL_MAX", 10, 1, 200),
		redisUrl: url(env, "REDIS_URL", ["redis:", "rediss:"]),
		kafkaBrokers: kafkaBrokers(env),
		kafkaTopicPrefix: read(env, "KAFKA_TOPIC_PREFIX") ?? "checkout.",
		kafkaSessionTimeoutMs: integer(env, "KAFKA_SESSION_TIMEOUT_MS", 30000, 6000, 300000),
		kafkaCommitIntervalMs: integer(env, "KAFKA_COMMIT_INTERVAL_MS", 100, 0, 60000),
		paymentGatewayUrl: url(env, "PAYMENT_GATEWAY_URL", ["http:", "https:"]),
		paymentTimeoutMs: integer(env, "PAYMENT_TIMEOUT_MS", 5000, 50, 120000),
		paymentRetries: integer(env, "PAYMENT_RETRIES", 3, 0, 10),
		paymentAbandonMs: integer(env, "PAYMENT_ABANDON_MS", 120000, 1000, 86_400_000),
		refundMaxAttempts: integer(env, "REFUND_MAX_ATTEMPTS", 6, 1, 50),
		paymentBreakerThreshold: integer(env, "PAYMENT_BREAKER_THRESHOLD", 5, 1, 1000),
		paymentBreakerOpenMs: integer(env, "PAYMENT_BREAKER_OPEN_MS", 10000, 100, 600000),
		refundRetryBaseMs: integer(env, "REFUND_RETRY_BASE_MS", 1000, 10, 600000),
		paymentWebhookSecret: webhookSecret ?? (production ? undefined : DEV_WEBHOOK_SECRET),
		// Outside production the shop's own pages (this gateway) are where customers come back to.
		paymentRedirectOrigins: origins(env, "PAYMENT_REDIRECT_ORIGINS", false) ?? (production ? [] : [`http://localhost:${port}`, `http://127.0.0.1:${port}`]),
		paymentSessionTtlMs: integer(env, "PAYMENT_SESSION_TTL_MS", 30 * 60 * 1000, 1000, 24 * 3600 * 1000),
		mockGatewayWebhookUrl: url(env, "MOCK_GATEWAY_WEBHOOK_URL", ["http:", "https:"]),
		port,
		rateLimit: integer(env, "RATE_LIMIT", 600, 1, 1_000_000),
		rateLimitWindowMs: integer(env, "RATE_LIMIT_WINDOW_MS", 60000, 100, 3600000),
		corsOrigins: origins(env, "CORS_ORIGINS", true),
		bodyLimitBytes: integer(env, "BODY_LIMIT_BYTES", 65536, 1024, 10 * 1024 * 1024),
		httpHeadersTimeoutMs: integer(env, "HTTP_HEADERS_TIMEOUT_MS", 5000, 100, 120000),
		httpRequestTimeoutMs: integer(env, "HTTP_REQUEST_TIMEOUT_MS", 10000, 100, 600000),
		jwtSecret: jwtSecret ?? DEV_JWT_SECRET,
		smtpUrl: url(env, "SMTP_URL", ["smtp:", "smtps:"]),
		logLevel: oneOf(env, "LOG_LEVEL", LOG_LEVELS, "info"),
		tracingExporter,
		tracingEndpoint: url(env, "TRACING_ENDPOINT", ["http:", "https:"]),
		metricsPort: integer(env, "METRICS_PORT", 3030, 0, 65535),
		healthPort: integer(env, "HEALTH_PORT", 0, 0, 65535),
		requestTimeoutMs: integer(env, "REQUEST_TIMEOUT_MS", 10000, 100, 600000),
		heartbeatTimeoutS: integer(env, "HEARTBEAT_TIMEOUT_S", 10, 3, 300),
		reservationTtlMs: integer(env, "RESERVATION_TTL_MS", 15 * 60 * 1000, 1000, 7 * 24 * 3600 * 1000),
		reservationSweepMs: integer(env, "RESERVATION_SWEEP_MS", -1, -1, 3600 * 1000),
		sagaStepTimeoutMs: integer(env, "SAGA_STEP_TIMEOUT_MS", 60000, 500, 24 * 3600 * 1000),
		storeCurrency,
		voucherThresholdCents: integer(env, "VOUCHER_THRESHOLD_CENTS", 10000, 0, Number.MAX_SAFE_INTEGER),
		voucherAmountCents: integer(env, "VOUCHER_AMOUNT_CENTS", 500, 1, Number.MAX_SAFE_INTEGER),
		voucherTtlDays: integer(env, "VOUCHER_TTL_DAYS", 365, 1, 3650),
		eventMaxAttempts: integer(env, "EVENT_MAX_ATTEMPTS", 5, 1, 100),
		eventBatchMax: integer(env, "EVENT_BATCH_MAX", 100, 1, 1000),
		sinkBatchIntervalMs: integer(env, "SINK_BATCH_INTERVAL_MS", 50, 0, 10000),
		outboxPollMs: integer(env, "OUTBOX_POLL_MS", 1000, 10, 60000),
		embeddedVacuumMs: integer(env, "EMBEDDED_VACUUM_MS", 10000, 100, 3600 * 1000),
		embeddedCheckpointMb: integer(env, "EMBEDDED_CHECKPOINT_MB", 256, 1, 64 * 1024),
		embeddedStuckMs: integer(env, "EMBEDDED_STUCK_MS", 60000, 1000, 24 * 3600 * 1000),
		lockTtlMs: integer(env, "LOCK_TTL_MS", 10000, 100, 600000),
		lockWaitMs: integer(env, "LOCK_WAIT_MS", 5000, 0, 600000),
		shutdownDrainMs: integer(env, "SHUTDOWN_DRAIN_MS", 0, 0, 60000),
	};

	// Unset: a quarter of the TTL, between 200 ms and 5 s.
	if (config.reservationSweepMs === -1) config.reservationSweepMs = Math.max(200, Math.min(5000, Math.floor(config.reservationTtlMs / 4)));
	if (config.transporter && !config.databaseUrl && usesDatabase(config.services)) {
		throw new ConfigError("DATABASE_URL", "is required when TRANSPORTER is set: the embedded database belongs to one process");
	}
	if (config.httpHeadersTimeoutMs > config.httpRequestTimeoutMs) {
		throw new ConfigError("HTTP_HEADERS_TIMEOUT_MS", `must not exceed HTTP_REQUEST_TIMEOUT_MS (${config.httpRequestTimeoutMs})`);
	}
	if (tracingExporter !== "none" && tracingExporter !== "console" && tracingExporter !== "event" && !config.tracingEndpoint) {
		throw new ConfigError("TRACING_ENDPOINT", `is required with TRACING_EXPORTER=${tracingExporter}`);
	}
	return config;
}

/** Every service but the gateway owns tables. */
export function usesDatabase(names: readonly ServiceName[]): boolean {
	return names.some(n => n !== "gateway");
}

/**
 * Where a PostgreSQL URL points, as libpq reads it: its `host` parameter wins over the URL's host,
 * and names a Unix socket's directory when it is a path (`?host=/var/run/postgresql`).
 */
export function postgresServer(url: string): { host: string; port: number; socketDir?: string } {
	const u = new URL(url);
	const host = u.searchParams.get("host") ?? decodeURIComponent(u.hostname);
	return { host, port: Number(u.port || 5432), ...(host.startsWith("/") ? { socketDir: host } : {}) };
}
