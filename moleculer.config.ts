import os from "node:os";
import type { BrokerOptions, Context, Errors } from "moleculer";
import { redactSecrets } from "./lib/api/input";
import type { Config } from "./lib/config";

/** Errors worth another try: Moleculer's retryable ones (timeouts, unreachable nodes, 5xx-like). */
const isRetryable = (err: Error) => Boolean((err as Errors.MoleculerError).retryable);

function tracingExporter(config: Config): NonNullable<Exclude<BrokerOptions["tracing"], boolean>>["exporter"] {
	switch (config.tracingExporter) {
		case "console":
			return { type: "Console", options: { width: 100 } };
		// Jaeger's collector accepts Zipkin v2 spans (its :9411 endpoint), which spares the
		// deprecated jaeger-client package that Moleculer's own Jaeger exporter needs.
		case "zipkin":
		case "jaeger":
			return { type: "Zipkin", options: { baseURL: config.tracingEndpoint } };
		case "event":
			return { type: "Event", options: { eventName: "$tracing.spans", interval: 1 } }; // seconds
		default:
			return undefined;
	}
}

/**
 * Broker options for one node, from the parsed configuration (SPEC section 8). In the spirit of
 * the Moleculer project template, everything that differs between a laptop and a cluster is here.
 */
export function createBrokerOptions(config: Config): BrokerOptions {
	const exporter = tracingExporter(config);
	return {
		namespace: config.namespace,
		nodeID: config.nodeID ?? `${os.hostname().toLowerCase()}-${process.pid}`,
		logger: { type: "Console", options: { level: config.logLevel, formatter: "short", colors: !config.production } },
		// No transporter: one node with every service in this process.
		transporter: config.transporter ? { type: "NATS", options: { url: config.transporter } } : null,
		cacher: config.redisUrl
			? // ioredis takes the URL as it is; the option's published type wants an object.
				{ type: "Redis", options: { prefix: `${config.namespace}-cache`, ttl: 30, redis: config.redisUrl as unknown as Record<string, any> } }
			: { type: "Memory", options: { ttl: 30 } },
		serializer: "JSON",
		requestTimeout: config.requestTimeoutMs,
		// Retries only for retryable errors; actions that are not idempotent set `retryPolicy: { enabled: false }`.
		retryPolicy: { enabled: true, retries: 3, delay: 100, maxDelay: 2000, factor: 2, check: isRetryable },
		maxCallLevel: 100,
		// A node killed without a goodbye is dropped after the timeout, and the requests it held are
		// retried elsewhere: until then, calls that reach it fail. Five beats per timeout: a live node
		// on a busy machine that misses two or three is not dropped.
		heartbeatInterval: Math.max(1, Math.round(config.heartbeatTimeoutS / 5)),
		heartbeatTimeout: config.heartbeatTimeoutS,
		contextParamsCloning: false,
		// A stopping node waits for the requests it accepted before it leaves.
		tracking: { enabled: true, shutdownTimeout: 10000 },
		disableBalancer: false,
		registry: { strategy: "RoundRobin", preferLocal: true },
		circuitBreaker: {
			enabled: true,
			threshold: 0.5,
			minRequestCount: 20,
			windowTime: 60,
			halfOpenTime: 10000,
			// A lock not had in time is contention on some rows (a hot product), not a broken endpoint:
			// counted, it opened the breaker and made every other product's reservation unavailable.
			check: (err: Error) => isRetryable(err) && (err as Errors.MoleculerError).type !== "LOCK_TIMEOUT",
		},
		bulkhead: { enabled: true, concurrency: 50, maxQueueSize: 500 },
		validator: true,
		metrics: {
			enabled: true,
			reporter: config.metricsPort > 0 ? [{ type: "Prometheus", options: { port: config.metricsPort, path: "/metrics" } }] : [],
		},
		tracing: {
			enabled: exporter !== undefined,
			exporter,
			events: true,
			stackTrace: !config.production,
			// Spans carry an action's params, minus what is a credential (card tokens, passwords, …).
			tags: { action: (ctx: Context) => ({ params: redactSecrets(ctx.params) }) },
		},
	};
}
