import type { ServiceBroker } from "moleculer";

/**
 * The business metrics of the checkout (on /metrics next to Moleculer's own). Registered once per
 * broker, on first use, so every node exposes the ones its services produce.
 */
const DEFINITIONS = {
	orders: { type: "counter", name: "checkout_orders_total", labelNames: ["status"], description: "Orders reaching a status that ends a step of the saga (CONFIRMED, COMPLETED, FAILED, PAYMENT_FAILED, CANCELLED)" },
	sagaStep: {
		type: "histogram",
		name: "checkout_saga_step_seconds",
		labelNames: ["status"],
		buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
		// Moleculer prints a histogram's _sum and _count only when it has quantiles.
		quantiles: [0.5, 0.95, 0.99],
		description: "Time an order spent before reaching each status",
	},
	payments: { type: "counter", name: "checkout_payments_total", labelNames: ["method", "outcome"], description: "Payment outcomes: AUTHORIZED or the failure code" },
	paymentSessions: { type: "counter", name: "checkout_payment_sessions_total", labelNames: ["outcome"], description: "Hosted payment sessions: CREATED, then COMPLETED or EXPIRED" },
	reservations: { type: "counter", name: "checkout_stock_reservations_total", labelNames: ["outcome"], description: "Reservations: RESERVED or OUT_OF_STOCK" },
	readAheadRetries: {
		type: "counter",
		name: "checkout_read_ahead_retries_total",
		labelNames: ["service"],
		description: "Transactions run again because rows they read ahead changed before their commit: contention on the same rows",
	},
	lockTimeouts: { type: "counter", name: "checkout_lock_timeouts_total", labelNames: ["service"], description: "Locks not had in time (LOCK_TIMEOUT): contention on the same keys" },
	outboxBacklog: { type: "gauge", name: "checkout_outbox_backlog", labelNames: ["service"], description: "Events written but not yet published, per service" },
	eventDelay: {
		type: "histogram",
		name: "checkout_event_handling_delay_seconds",
		labelNames: ["service", "event"],
		buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60],
		quantiles: [0.5, 0.95, 0.99],
		description: "From an event's occurrence to its handling by a consumer (consumer lag, whatever the transport)",
	},
	deadLetters: { type: "counter", name: "checkout_dead_letters_total", labelNames: ["service", "event"], description: "Events a consumer gave up on after its retries" },
} as const;

type Name = keyof typeof DEFINITIONS;
const registered = new WeakMap<ServiceBroker, Set<Name>>();

function ensure(broker: ServiceBroker, name: Name): string | undefined {
	if (!broker.isMetricsEnabled()) return undefined;
	let done = registered.get(broker);
	if (!done) registered.set(broker, (done = new Set()));
	if (!done.has(name)) {
		if (!broker.metrics.getMetric(DEFINITIONS[name].name)) broker.metrics.register({ ...DEFINITIONS[name] } as any);
		done.add(name);
	}
	return DEFINITIONS[name].name;
}

export function countMetric(broker: ServiceBroker, name: Name, labels: Record<string, string>, value = 1): void {
	const metric = ensure(broker, name);
	if (metric) broker.metrics.increment(metric, labels, value);
}

export function observeMetric(broker: ServiceBroker, name: Name, labels: Record<string, string>, value: number): void {
	const metric = ensure(broker, name);
	if (metric) broker.metrics.observe(metric, value, labels);
}

export function setMetric(broker: ServiceBroker, name: Name, labels: Record<string, string>, value: number): void {
	const metric = ensure(broker, name);
	if (metric) broker.metrics.set(metric, value, labels);
}
