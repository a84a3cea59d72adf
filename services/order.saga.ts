import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Transaction } from "../lib/transactions";
import { WITH_ROW_VERSION } from "../lib/sql";
import { KnownRows } from "../lib/known-rows";
import { EventsMixin, typedHandler, type EventsService } from "../mixins/events.mixin";
import { contextOf } from "../mixins/db.mixin";
import { runtimeOf } from "../lib/runtime";
import { ConflictError, NotFoundError } from "../lib/errors";
import { runEvery, type Periodic } from "../lib/periodic";
import { queueVerdict, type QueueProgress } from "../lib/domain/backlog";
import { countMetric, observeMetric } from "../lib/metrics";
import { transitionTime, type OrderStatus } from "../lib/domain/order-status";
import type { EventPayloads } from "../lib/events/catalogue";
import {
	EVENT_FACTS,
	STATUS_EVENT,
	factsOf,
	allowed,
	deadlineOf,
	decide,
	giveUp,
	type Deadline,
	type Decision,
	type Fact,
	type OrderConsumes,
	type OrderPaymentMethod,
	type OrderState,
	type OrderStatusEvent,
	type PaymentStatus,
} from "../lib/domain/saga";
import { GroupCommit } from "../lib/batch";
import type { DomainEvent } from "../lib/events/envelope";
import type { PricedLine } from "../lib/domain/cart";
import { orderView, statusStep, type StatusChange } from "../lib/api/order-view";
import type { AuthorizeResult } from "./payment.service";
import type { CommitResult, ReserveResult } from "./inventory.service";

/**
 * The order's side of the saga, read top to bottom: the events it reacts to and how (each event a
 * fact, decided by lib/domain/saga, where each step stands beside its compensation), the one place
 * where every change of an order is written (applySteps), the payment's outcome, the refund, and
 * the watchdog that re-drives overdue steps through the same decisions. order.service.ts keeps the
 * actions and mixes this in.
 */

export interface OrderRow {
	id: string;
	user_id: string;
	status: OrderStatus;
	payment_status: PaymentStatus;
	items: PricedLine[];
	subtotal: string;
	discount: string;
	voucher_discount: string;
	total: string;
	currency: string;
	promo_codes: string[];
	voucher_codes: string[];
	shipping_address: Record<string, string>;
	customer: { name?: string; email?: string } | null;
	payment_method: OrderPaymentMethod | null;
	card_token: string | null;
	payment_id: string | null;
	payment_session_id: string | null;
	payment_failure_reason: string | null;
	failure_code: string | null;
	failure_reason: string | null;
	failure_details: unknown;
	courier: string | null;
	tracking_number: string | null;
	idempotency_key: string | null;
	request_hash: string | null;
	redrives: number;
	created_at: Date;
	updated_at: Date;
}

/** One step on one order: its decision, taken on the order as the steps before it left it. */
export interface Step {
	orderId: string;
	decide: (order: OrderState) => Decision | undefined;
	/** The event that caused it (its id becomes the causation of the events the step publishes). */
	cause?: DomainEvent;
	/** Where its follow-ups continue the trace (else the transaction's context). */
	ctx?: Context;
}

export const stateOf = (o: OrderRow): OrderState => ({
	status: o.status,
	paymentStatus: o.payment_status,
	paysAtOnce: o.payment_method !== null,
	paymentMethod: o.payment_method,
	sessionId: o.payment_session_id,
	total: Number(o.total),
});

/** The data of the event a transition announces (SPEC section 7). */
function statusEventData(o: OrderRow, decision: Decision): EventPayloads[OrderStatusEvent] {
	const data = { orderId: o.id, userId: o.user_id, total: Number(o.total), currency: o.currency, voucherCodes: o.voucher_codes };
	if (o.status === "FAILED" || o.status === "PAYMENT_FAILED") return { ...data, code: o.failure_code ?? decision.reason ?? o.status, reason: o.failure_reason ?? decision.reason ?? o.status };
	if (o.status === "DISPATCHED") return { ...data, courier: o.courier, trackingNumber: o.tracking_number };
	if (o.status === "CANCELLED") return { ...data, reason: decision.reason ?? "CANCELLED" };
	return data;
}

/** A payment service answer as the order's decision (the same as its event's). */
export const paymentDecision =
	(result: AuthorizeResult): Step["decide"] =>
	state =>
		decide(state, result.ok ? { kind: "paid", paymentId: result.paymentId } : { kind: "paymentFailed", paymentId: result.paymentId, code: result.code, reason: result.reason });

/** Where a checkout ends, for the orders metric (DISPATCHED is a step of fulfilment, not an outcome). */
const FINAL_STEPS = new Set<OrderStatus>(["CONFIRMED", "COMPLETED", "FAILED", "PAYMENT_FAILED", "CANCELLED"]);
const MAX_REDRIVES = 5;
/** The saga's Kafka consumers whose queue an order can wait in, by the step it waits in. */
const SAGA_CONSUMERS: Record<string, string[]> = {
	inventory: ["order.created", "payment.authorized"],
	order: ["stock.reserved", "stock.failed", "stock.committed"],
};
const QUEUED_STEPS = new Set<OrderStatus>(["CREATED", "PAYMENT_SUCCESS"]);
/** The orders whose rows a node keeps as it wrote them: a checkout takes well under a second, so these hold the ones under way many times over. */
const KNOWN_ORDERS_MAX = 5_000;
const KNOWN_ORDERS_TTL_MS = 60_000;

/** What this mixin adds to the order service's `this`. */
export type OrderSagaMethods = {
	watchdogRun?: Periodic;
	queueProgress: Record<string, QueueProgress>;
	/** Payment refusals, applied to their orders in groups (takeSteps). */
	paymentOutcomes: GroupCommit<Step, OrderRow | undefined>;
	sagaQueueMoving(): Promise<boolean>;
	stepTimeoutMs(): number;
	/** The orders this node wrote last, as written (lockOrders). */
	knownOrders: KnownRows<OrderRow>;
	lockOrders(orderIds: string[], tx: Transaction): Promise<Map<string, OrderRow>>;
	applySteps(tx: Transaction, orders: Map<string, OrderRow>, steps: Step[]): Promise<Map<string, OrderRow>>;
	takeSteps(steps: Step[], opts?: { tx?: Transaction; ctx?: Context }): Promise<Map<string, OrderRow>>;
	takeStep(orderId: string, decide: Step["decide"], ctx?: Context): Promise<OrderRow>;
	requestRefund(orderId: string, reason: string): Promise<void>;
	voidSession(orderId: string, ctx?: Context): Promise<void>;
	recordRefundEnd(orderId: string, status: "REFUNDED" | "REFUND_FAILED"): Promise<void>;
	startPayment(order: OrderRow, ctx?: Context): Promise<AuthorizeResult | undefined>;
	askAgain(order: OrderRow): Promise<Fact | undefined>;
	redrive(orderId: string): Promise<void>;
	watchdog(): Promise<void>;
};
type SagaThis = EventsService & OrderSagaMethods;

/**
 * The order's reactions to the saga's events, a batch at a time: each event as a fact, decided on
 * its order by lib/domain/saga, all written together (applySteps) in the batch's transaction.
 */
const reactions = typedHandler<OrderConsumes>({
	async batch(events, { tx, contexts }) {
		const self = this as SagaThis;
		const steps = events.flatMap((event, i) => factsOf(event).map(fact => ({ orderId: event.data.orderId, decide: (state: OrderState) => decide(state, fact), cause: event, ctx: contexts[i] })));
		if (steps.length > 0) await self.takeSteps(steps, { tx });
	},
});

const saga: ServiceSchema<ServiceSettingSchema, Record<string, any>, Record<string, any>, SagaThis> = {
	name: "order",
	mixins: [EventsMixin({ handlers: Object.fromEntries(Object.keys(EVENT_FACTS).map(name => [name, reactions])) })],

	methods: {
		stepTimeoutMs() {
			return runtimeOf(this.broker).config.sagaStepTimeoutMs;
		},

		/**
		 * The orders' rows, locked until the commit (read ahead when `tx` may). Rows this node wrote
		 * last, with their versions, are not read ahead again: the read's guard checks them all the
		 * same. They are taken as they are used, so a guard that fails (another node wrote the order
		 * meanwhile) is followed by a read.
		 */
		async lockOrders(orderIds: string[], tx: Transaction) {
			const ids = [...new Set(orderIds)];
			const [rows] = await this.sqlEach<[OrderRow[]]>([{ ...this.lockedRead("orders", "id = ANY(ARRAY[:orderIds]::uuid[])", "id", { orderIds: ids }), known: this.knownOrders.take(ids) }], tx);
			return new Map(rows.map(r => [r.id, r]));
		},

		/**
		 * Where every change of an order is written: each step's decision (lib/domain/saga) taken in
		 * turn on the order as the steps before left it, checked against the state machine (409
		 * ILLEGAL_TRANSITION otherwise), then, for all the orders at once, one UPDATE with their final
		 * state, one INSERT of their status history, their events in the outbox (all three sent with
		 * the COMMIT: nothing reads them back), and after the commit the follow-ups (payments to
		 * start, refunds to ask for). `orders` holds their locked rows; it is returned with the
		 * decided changes applied (`updated_at` and the step deadline as they were read).
		 */
		async applySteps(tx: Transaction, orders: Map<string, OrderRow>, steps: Step[]) {
			const changed = new Map<string, { row: OrderRow; deadline: Deadline | "keep" }>();
			const history: Array<{ orderId: string; status: OrderStatus; reason: string | null; at: Date }> = [];
			const after: Array<() => void> = [];
			// The time of the changes, set here rather than by the database, so the broadcast below
			// carries the order exactly as written (its updatedAt, its history's `at`).
			const now = new Date();
			for (const { orderId, decide, cause, ctx } of steps) {
				const order = orders.get(orderId);
				if (!order) {
					this.logger.warn(`${cause?.eventName ?? "A step"} names unknown order ${orderId}; ignored.`);
					continue;
				}
				const decision = decide(stateOf(order));
				if (!decision) continue;
				if (!allowed(order.status, decision)) {
					throw new ConflictError("ILLEGAL_TRANSITION", `An order cannot go from ${order.status} to ${decision.to}`, { from: order.status, to: decision.to });
				}
				const lastChange = new Date(order.updated_at);
				const at = transitionTime(now, lastChange);
				const to = decision.to ?? order.status;
				const row: OrderRow = { ...order, ...(decision.set as Partial<OrderRow>), status: to, redrives: decision.to ? 0 : order.redrives, updated_at: at };
				orders.set(orderId, row);
				changed.set(orderId, { row, deadline: deadlineOf(decision, to, row.payment_status) ?? changed.get(orderId)?.deadline ?? "keep" });
				if (decision.to) {
					history.push({ orderId, status: to, reason: decision.reason ?? null, at });
					const eventName = STATUS_EVENT[to];
					if (eventName) this.publishEvent(tx, eventName, statusEventData(row, decision), { key: orderId, correlationId: orderId, causedBy: cause });
					const stepSeconds = (Date.now() - lastChange.getTime()) / 1000;
					after.push(() => {
						observeMetric(this.broker, "sagaStep", { status: to }, stepSeconds);
						if (FINAL_STEPS.has(to)) countMetric(this.broker, "orders", { status: to });
						// For live tracking (SSE): not a domain event, a hint to whoever follows the order.
						const change: StatusChange = { orderId, userId: row.user_id, status: to, from: order.status, step: statusStep({ status: to, at, reason: decision.reason ?? null }), order: orderView(row, []) };
						void this.broker.broadcast("order.status-changed", change);
					});
				}
				const followUp = decision.followUp;
				if (followUp?.kind === "startPayment") after.push(() => void this.startPayment(row, ctx ?? contextOf(tx)));
				if (followUp?.kind === "refund") after.push(() => void this.requestRefund(orderId, followUp.reason));
				if (followUp?.kind === "voidSession") after.push(() => void this.voidSession(orderId, ctx ?? contextOf(tx)));
			}
			if (changed.size > 0) {
				// The ids again as an array beside the rows: PostgreSQL takes a function's rows for 100,
				// so it joined them to a scan of the whole table, whose cost grew with every order;
				// `id = ANY(ids)` reads the rows by their key.
				const rows = [...changed.values()].map(({ row, deadline }) => ({
					id: row.id,
					status: row.status,
					payment_status: row.payment_status,
					payment_method: row.payment_method,
					payment_session_id: row.payment_session_id,
					payment_id: row.payment_id,
					card_token: row.card_token,
					payment_failure_reason: row.payment_failure_reason,
					failure_code: row.failure_code,
					failure_reason: row.failure_reason,
					failure_details: row.failure_details ?? null,
					courier: row.courier,
					tracking_number: row.tracking_number,
					redrives: row.redrives,
					updated_at: row.updated_at,
					deadline: typeof deadline === "string" ? deadline : null,
					deadline_after: typeof deadline === "string" ? null : deadline.after,
				}));
				this.queueSql(
					`UPDATE ${this.table("orders")} o SET status = v.status, payment_status = v.payment_status, payment_method = v.payment_method, payment_session_id = v.payment_session_id,
					   payment_id = v.payment_id, card_token = v.card_token,
					   payment_failure_reason = v.payment_failure_reason, failure_code = v.failure_code, failure_reason = v.failure_reason, failure_details = v.failure_details,
					   courier = v.courier, tracking_number = v.tracking_number, redrives = v.redrives, updated_at = v.updated_at,
					   step_deadline = CASE WHEN v.deadline_after IS NOT NULL THEN v.deadline_after + make_interval(secs => :s)
					                        WHEN v.deadline = 'step' THEN now() + make_interval(secs => :s) WHEN v.deadline = 'none' THEN NULL ELSE o.step_deadline END
					 FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(id uuid, status text, payment_status text, payment_method text, payment_session_id text, payment_id uuid, card_token text, payment_failure_reason text, failure_code text,
					   failure_reason text, failure_details jsonb, courier text, tracking_number text, redrives int, updated_at timestamptz, deadline text, deadline_after timestamptz)
					 WHERE o.id = v.id AND o.id = ANY(ARRAY[:ids]::uuid[])
					 RETURNING o.*, ${WITH_ROW_VERSION}`,
					{ rows: JSON.stringify(rows), ids: rows.map(r => r.id), s: this.stepTimeoutMs() / 1000 },
					tx,
					written => this.knownOrders.remember(written as OrderRow[], tx),
				);
			}
			if (history.length > 0) {
				this.queueSql(
					`INSERT INTO ${this.table("order_status_history")} (order_id, status, reason, at) SELECT * FROM unnest(ARRAY[:ids]::uuid[], ARRAY[:statuses]::text[], ARRAY[:reasons]::text[], ARRAY[:ats]::timestamptz[])`,
					{ ids: history.map(h => h.orderId), statuses: history.map(h => h.status), reasons: history.map(h => h.reason), ats: history.map(h => h.at) },
					tx,
				);
			}
			tx.afterCommit(() => {
				for (const fn of after) fn();
			});
			return orders;
		},

		/** Steps on orders, in one transaction of their own (or `tx`): their rows locked once, then applySteps. */
		async takeSteps(steps: Step[], opts: { tx?: Transaction; ctx?: Context } = {}) {
			const run = async (tx: Transaction) => this.applySteps(tx, await this.lockOrders(steps.map(s => s.orderId), tx), steps);
			return opts.tx ? run(opts.tx) : this.transaction(run, opts.ctx, { readAhead: true });
		},

		/** One order's step, in a transaction of its own: the order as the step left it (404 if it does not exist). */
		async takeStep(orderId: string, decide: Step["decide"], ctx?: Context) {
			const order = (await this.takeSteps([{ orderId, decide }], { ctx })).get(orderId);
			if (!order) throw new NotFoundError("Order", { orderId });
			return order;
		},

		/**
		 * Asks the payment to refund the order (idempotent). Its answer is the payment's own word: a
		 * refund that already ended settles the order here, so a REFUND_PENDING order never depends
		 * on its payment.refunded event alone (one dead-lettered would leave it pending for ever).
		 */
		async requestRefund(orderId: string, reason: string) {
			try {
				const { status } = await this.broker.call<{ status: string }, Record<string, unknown>>("payment.refund", { orderId, reason });
				if (status === "REFUNDED" || status === "REFUND_FAILED") {
					await this.recordRefundEnd(orderId, status);
				}
			} catch (err) {
				this.logger.warn(`Refund request for order ${orderId} failed (${(err as Error).message}); the watchdog will ask again.`);
			}
		},

		/**
		 * Ends the order's open hosted session at the gateway (the order ended first). A session paid
		 * meanwhile is refunded on the payment service's answer, as `payment.authorized` would on an
		 * ended order (the same decision, so whichever comes second changes nothing): an ended order
		 * has no step left for the watchdog to re-drive, so it must not depend on that event alone. A
		 * gateway that cannot be reached lets the session expire on its own (never after the reservation).
		 */
		async voidSession(orderId: string, ctx?: Context) {
			try {
				const { paymentId } = await (ctx ?? this.broker).call<{ paymentId?: string }, Record<string, unknown>>("payment.voidSession", { orderId });
				if (paymentId) await this.takeStep(orderId, state => decide(state, { kind: "paid", paymentId }), ctx);
			} catch (err) {
				this.logger.warn(`Could not void the payment session of order ${orderId}, or apply its payment (${(err as Error).message}); the session expires on its own.`);
			}
		},

		/** How the order's refund ended, if it still waits for it (the payment service answered the request). */
		async recordRefundEnd(orderId: string, status: "REFUNDED" | "REFUND_FAILED") {
			this.knownOrders.forget([orderId]);
			await this.sql(`UPDATE ${this.table("orders")} SET payment_status = :status, step_deadline = NULL, updated_at = now() WHERE id = :orderId AND payment_status = 'REFUND_PENDING'`, { orderId, status });
		},

		/**
		 * Authorizes the order's chosen payment (idempotent). A refusal joins the others that arrive
		 * meanwhile and is applied with them at once. An authorization is not: its event
		 * (`payment.authorized`, or `stock.committed`, which carries it) reaches the order's batches
		 * soon after and moves the order there, which spares the order a transaction of its own
		 * per checkout (bench/ANALYSIS.md). The watchdog retries on error.
		 */
		async startPayment(order: OrderRow, ctx?: Context) {
			// A hosted payment is the customer's to make on the gateway's page.
			if (order.status !== "PAYMENT_PENDING" || !order.payment_method || order.payment_method === "HOSTED_CARD") return undefined;
			try {
				const result = await (ctx ?? this.broker).call<AuthorizeResult, Record<string, unknown>>("payment.authorize", {
					orderId: order.id,
					userId: order.user_id,
					amount: Number(order.total),
					currency: order.currency,
					method: order.payment_method,
					cardToken: order.card_token ?? undefined,
				});
				if (!result.ok) await this.paymentOutcomes.submit({ orderId: order.id, decide: paymentDecision(result) });
				return result;
			} catch (err) {
				this.logger.warn(`Payment of order ${order.id} did not complete (${(err as Error).message}); the watchdog will retry.`);
				return undefined;
			}
		},

		/** One overdue order: its step taken again through idempotent actions, or compensated after MAX_REDRIVES. */
		async redrive(orderId: string) {
			this.knownOrders.forget([orderId]);
			const [order] = await this.sql<OrderRow>(
				`UPDATE ${this.table("orders")} SET redrives = redrives + 1, step_deadline = now() + make_interval(secs => :s)
				 WHERE id = :orderId AND step_deadline <= now() RETURNING *`,
				{ orderId, s: this.stepTimeoutMs() / 1000 },
			);
			if (!order) return; // another node took it
			this.logger.warn(`Watchdog: order ${orderId} overdue in ${order.status}/${order.payment_status} (try ${order.redrives}).`);
			if (order.payment_status === "REFUND_PENDING") {
				await this.requestRefund(orderId, "WATCHDOG");
				return;
			}
			if (order.redrives > MAX_REDRIVES) {
				await this.takeStep(orderId, giveUp);
				return;
			}
			const fact = await this.askAgain(order);
			if (fact) await this.takeStep(orderId, state => decide(state, fact));
		},

		/** What the service the order waits on says now, as a fact (its actions are idempotent). */
		async askAgain(order: OrderRow): Promise<Fact | undefined> {
			switch (order.status) {
				case "CREATED": {
					const items = order.items.map(l => ({ productId: l.productId, quantity: l.quantity }));
					const result = await this.broker.call<ReserveResult, Record<string, unknown>>("inventory.reserve", { orderId: order.id, items });
					if (result.ok) return { kind: "reserved", expiresAt: result.expiresAt };
					return result.reason === "OUT_OF_STOCK" ? { kind: "outOfStock", lines: result.lines } : { kind: "reservationReleased" };
				}
				case "PAYMENT_PENDING": {
					if (order.payment_method === "HOSTED_CARD") {
						// Its webhook and verification may both have been lost: the gateway knows.
						const session = await this.broker.call<{ paymentId?: string }, Record<string, unknown>>("payment.sessionOfOrder", { orderId: order.id });
						if (session.paymentId) return { kind: "paid", paymentId: session.paymentId };
					} else if (order.payment_method) {
						// Re-driven, an authorization is taken from the answer: its event may be what is late.
						const result = await this.startPayment(order);
						return result?.ok ? { kind: "paid", paymentId: result.paymentId } : undefined;
					}
					const reservation = await this.broker.call<{ status: string }, Record<string, unknown>>("inventory.reservation", { orderId: order.id }).catch(() => undefined);
					return reservation && reservation.status !== "RESERVED" ? { kind: "reservationGone" } : undefined;
				}
				case "PAYMENT_SUCCESS": {
					const result = await this.broker.call<CommitResult, Record<string, unknown>>("inventory.commit", { orderId: order.id });
					return result.ok ? { kind: "committed" } : { kind: "reservationGone" };
				}
				default:
					return undefined;
			}
		},

		/** True while a saga consumer group has a Kafka backlog that moves (the bus has no queue to read). */
		async sagaQueueMoving() {
			const runtime = runtimeOf(this.broker);
			if (!runtime.kafka()) return false;
			let moving = false;
			for (const [group, events] of Object.entries(SAGA_CONSUMERS)) {
				const lag = await runtime.consumerLag(group, events).catch(err => this.logger.warn(`Watchdog cannot read the lag of ${group}: ${(err as Error).message}`));
				if (!lag) continue;
				const verdict = queueVerdict(this.queueProgress[group], lag, Date.now(), this.stepTimeoutMs());
				this.queueProgress[group] = verdict.progress;
				if (verdict.moving) this.logger.info(`Watchdog: ${group} works off a backlog of ${lag.lag} events; its overdue steps wait their turn.`);
				moving ||= verdict.moving;
			}
			return moving;
		},

		async watchdog() {
			const dueSql = (skipQueued: boolean) =>
				this.sql<{ id: string; status: OrderStatus }>(
					`SELECT id, status FROM ${this.table("orders")} WHERE step_deadline <= now() ${skipQueued ? "AND status <> ALL(ARRAY[:queued]::text[])" : ""} ORDER BY step_deadline LIMIT 50`,
					{ queued: [...QUEUED_STEPS] },
				);
			let due = await dueSql(false);
			// Past its deadline only because its event waits behind a backlog that is being worked
			// off: the consumer will reach it, and a re-drive would only add load to a busy saga.
			if (due.some(o => QUEUED_STEPS.has(o.status)) && (await this.sagaQueueMoving())) due = await dueSql(true);
			for (const { id } of due) {
				await this.redrive(id).catch(err => this.logger.warn(`Watchdog could not re-drive order ${id}: ${(err as Error).message}`));
			}
		},
	},

	created() {
		this.queueProgress = {};
		this.knownOrders = new KnownRows<OrderRow>(row => row.id, KNOWN_ORDERS_MAX, KNOWN_ORDERS_TTL_MS);
		// Payment refusals that arrive while others are being applied are applied together next.
		this.paymentOutcomes = new GroupCommit(async steps => {
			const orders = await this.takeSteps(steps);
			return steps.map(s => orders.get(s.orderId));
		}, runtimeOf(this.broker).config.eventBatchMax);
	},


	async started() {
		this.watchdogRun = runEvery(Math.max(200, Math.min(5000, Math.floor(this.stepTimeoutMs() / 4))), () => this.watchdog(), this.logger, "Watchdog");
	},

	async stopped() {
		await this.watchdogRun?.stop();
	},
};

/** The order service's saga: its event handlers, its steps and its watchdog (mixed into order.service.ts, whose `this` it extends). */
export const OrderSagaMixin = saga as unknown as Partial<ServiceSchema>;
