import { canTransition, isPreDispatch, type OrderStatus } from "./order-status";
import type { EventPayloads } from "../events/catalogue";

/**
 * The order's side of the checkout saga (SPEC section 5) as pure decisions: what the order does
 * on each fact the other services report, read top to bottom. The order service turns events and
 * RPC answers into facts, applies the decisions of a whole batch at once, and runs the follow-ups
 * after the commit.
 */

export type PaymentStatus = "NOT_STARTED" | "PENDING" | "AUTHORIZED" | "FAILED" | "REFUND_PENDING" | "REFUNDED" | "REFUND_FAILED";
/** How the order is being paid: chosen at checkout or by process-payment, or on the gateway's hosted page. */
export type OrderPaymentMethod = "WALLET" | "CARD" | "HOSTED_CARD";

/** What a decision reads of an order. */
export interface OrderState {
	status: OrderStatus;
	paymentStatus: PaymentStatus;
	/** A payment method chosen at checkout: the payment starts as soon as the stock is reserved. */
	paysAtOnce: boolean;
	paymentMethod: OrderPaymentMethod | null;
	/** The hosted payment session the order waits on, if any. */
	sessionId: string | null;
	total: number;
}

/** Something another service reports about one order. */
export type Fact =
	| { kind: "reserved"; expiresAt: string }
	| { kind: "outOfStock"; lines: unknown }
	/** Released before it was reserved (the order was cancelled first): nothing to reserve any more. */
	| { kind: "reservationReleased" }
	| { kind: "reservationGone" }
	| { kind: "committed" }
	| { kind: "paid"; paymentId: string }
	| { kind: "paymentFailed"; paymentId?: string; code: string; reason: string }
	| { kind: "refundEnded"; status: "REFUNDED" | "REFUND_FAILED" }
	/** A hosted payment session ended unpaid. */
	| { kind: "sessionExpired"; sessionId: string };

/** The columns a decision may write, besides the status. */
export interface OrderChanges {
	payment_status?: PaymentStatus;
	payment_method?: OrderPaymentMethod | null;
	payment_session_id?: string | null;
	payment_id?: string;
	card_token?: null;
	payment_failure_reason?: string;
	failure_code?: string;
	failure_reason?: string;
	failure_details?: unknown;
	courier?: string;
	tracking_number?: string;
}

/**
 * When the order's current step is overdue: `step` = one step timeout from now, `{after}` = one
 * step timeout after that moment, `none` = no step to watch. Left out with a transition, it follows
 * from the new status (a step while pre-dispatch or refunding, none after).
 */
export type Deadline = "step" | "none" | { after: string };

/** What to do once the decision is committed. */
export type FollowUp = { kind: "startPayment" } | { kind: "refund"; reason: string } | { kind: "voidSession" };

export interface Decision {
	to?: OrderStatus;
	/** Recorded with the transition in the status history. */
	reason?: string;
	set?: OrderChanges;
	deadline?: Deadline;
	followUp?: FollowUp;
}

/** The order's events for each transition it announces (PAYMENT_PENDING and PAYMENT_SUCCESS are announced by their causes). */
export type OrderStatusEvent = "order.failed" | "order.confirmed" | "order.dispatched" | "order.completed" | "order.cancelled";
export const STATUS_EVENT: Partial<Record<OrderStatus, OrderStatusEvent>> = {
	FAILED: "order.failed",
	PAYMENT_FAILED: "order.failed",
	CONFIRMED: "order.confirmed",
	DISPATCHED: "order.dispatched",
	COMPLETED: "order.completed",
	CANCELLED: "order.cancelled",
};

/** Paid but not kept: the money goes back (the follow-up asks the payment service for the refund). */
const refund = (reason: string): Pick<Decision, "followUp"> & { set: OrderChanges } => ({ set: { payment_status: "REFUND_PENDING" }, followUp: { kind: "refund", reason } });

/** An order that ends while a hosted session is open: the session is voided (if it was paid meanwhile, that payment is refunded). */
const hostedOpen = (order: OrderState) => order.paymentMethod === "HOSTED_CARD" && order.paymentStatus === "PENDING";
const voidingSession = (order: OrderState): Pick<Decision, "followUp"> => (hostedOpen(order) ? { followUp: { kind: "voidSession" } } : {});

/** The saga step by step: each fact, what it does to the order, and beside it the compensation. */
export function decide(order: OrderState, fact: Fact): Decision | undefined {
	switch (fact.kind) {
		// 2 → 3. Stock reserved: the payment is next, now (method chosen) or by process-payment until the reservation expires.
		case "reserved":
			if (order.status !== "CREATED") return undefined;
			return order.paysAtOnce ? { to: "PAYMENT_PENDING", followUp: { kind: "startPayment" } } : { to: "PAYMENT_PENDING", deadline: { after: fact.expiresAt } };
		// Compensation: nothing was taken, the order fails.
		case "outOfStock":
			if (order.status !== "CREATED") return undefined;
			return { to: "FAILED", reason: "OUT_OF_STOCK", set: { failure_code: "OUT_OF_STOCK", failure_reason: "Some lines are out of stock", failure_details: { lines: fact.lines } } };
		case "reservationReleased":
			return order.status === "CREATED" ? { to: "CANCELLED", reason: "RESERVATION_RELEASED" } : undefined;

		// 4 → 5. Paid: the stock is committed next. Paid after the order ended: refunded, once.
		case "paid":
			if (order.status === "PAYMENT_PENDING") return { to: "PAYMENT_SUCCESS", set: { payment_status: "AUTHORIZED", payment_id: fact.paymentId, card_token: null } };
			if (isPreDispatch(order.status) || order.paymentStatus === "AUTHORIZED" || order.paymentStatus.startsWith("REFUND")) return undefined;
			return { set: { payment_status: "REFUND_PENDING", payment_id: fact.paymentId }, deadline: "step", followUp: { kind: "refund", reason: "ORDER_NOT_PAYABLE" } };
		// Compensation: the payment failed; inventory releases the stock on the same event.
		case "paymentFailed":
			if (order.status !== "PAYMENT_PENDING") return undefined;
			return {
				to: "PAYMENT_FAILED",
				reason: fact.code,
				set: { payment_status: "FAILED", ...(fact.paymentId ? { payment_id: fact.paymentId } : {}), payment_failure_reason: fact.reason, failure_code: fact.code, failure_reason: fact.reason, card_token: null },
			};

		// 5. Stock committed: the checkout is done.
		case "committed":
			return order.status === "PAYMENT_SUCCESS" ? { to: "CONFIRMED" } : undefined;
		// Compensation: the reservation expired first. Unpaid → cancelled; paid → failed and refunded.
		case "reservationGone":
			if (order.status === "PAYMENT_PENDING" && order.paymentStatus !== "AUTHORIZED") return { to: "CANCELLED", reason: "RESERVATION_EXPIRED", ...voidingSession(order) };
			if (order.status === "PAYMENT_SUCCESS" || order.status === "PAYMENT_PENDING") {
				const back = refund("RESERVATION_EXPIRED");
				return { to: "FAILED", reason: "RESERVATION_EXPIRED", ...back, set: { ...back.set, failure_code: "RESERVATION_EXPIRED", failure_reason: "The reservation expired before the payment was taken" } };
			}
			return undefined;

		// After a refund: how it ended.
		case "refundEnded":
			return { set: { payment_status: fact.status }, deadline: "none" };

		// The hosted session the order waits on ended unpaid: the order waits on, and may open another.
		case "sessionExpired":
			if (order.status !== "PAYMENT_PENDING" || !hostedOpen(order) || order.sessionId !== fact.sessionId) return undefined;
			return { set: { payment_status: "NOT_STARTED", payment_method: null, payment_session_id: null, payment_failure_reason: "The payment session expired" } };
	}
}

/**
 * Why an order cannot be paid on the hosted page now, or undefined: it must wait for payment with
 * no other payment under way (its own hosted session may be open: that one is answered again).
 */
export function hostedPaymentRefusal(order: OrderState): string | undefined {
	if (order.status !== "PAYMENT_PENDING") return `The order is ${order.status}; only a PAYMENT_PENDING order can be paid`;
	if (order.total === 0) return "Nothing is left to pay by card: pay it with process-payment";
	if (order.paymentStatus !== "NOT_STARTED" && !hostedOpen(order)) return "Another payment of the order is under way";
	return undefined;
}

/** A hosted session opened for the order (that hostedPaymentRefusal allows): the order waits on that one. */
export const sessionOpened = (sessionId: string): Decision => ({ set: { payment_method: "HOSTED_CARD", payment_status: "PENDING", payment_session_id: sessionId } });

/** The watchdog's last resort for an order whose step keeps timing out: it fails, and is refunded if paid. */
export function giveUp(order: OrderState): Decision | undefined {
	if (!isPreDispatch(order.status)) return undefined;
	const base: Decision = { to: "FAILED", reason: "SAGA_TIMEOUT", set: { failure_code: "SAGA_TIMEOUT", failure_reason: "A step of the checkout did not complete" }, ...voidingSession(order) };
	if (order.paymentStatus !== "AUTHORIZED") return base;
	const back = refund("SAGA_TIMEOUT");
	return { ...base, followUp: back.followUp, set: { ...base.set, ...back.set } };
}

/** A cancellation before dispatch (owner or admin): refunded if paid. */
export function cancel(order: OrderState, reason: string): Decision {
	return order.paymentStatus === "AUTHORIZED" ? { to: "CANCELLED", reason, ...refund("CANCELLED") } : { to: "CANCELLED", reason, ...voidingSession(order) };
}

/** The deadline a decision leaves the order with (see Deadline). */
export function deadlineOf(decision: Decision, to: OrderStatus, paymentStatus: PaymentStatus): Deadline | undefined {
	if (decision.deadline) return decision.deadline;
	if (!decision.to) return undefined; // unchanged
	return isPreDispatch(to) || paymentStatus === "REFUND_PENDING" ? "step" : "none";
}

/** Whether the state machine allows the decision's transition (an illegal one is refused, 409). */
export const allowed = (from: OrderStatus, decision: Decision): boolean => !decision.to || canTransition(from, decision.to);

/** The events the order reacts to. */
export type OrderConsumes =
	| "stock.reserved"
	| "stock.failed"
	| "stock.released"
	| "stock.committed"
	| "payment.authorized"
	| "payment.failed"
	| "payment.session_expired"
	| "payment.refunded"
	| "payment.refund_failed";

/** The events the order reacts to, as facts (the event → reaction table; `decide` holds the reactions). */
export const EVENT_FACTS: { [N in OrderConsumes]: (data: EventPayloads[N]) => Fact | Fact[] | undefined } = {
	"stock.reserved": d => ({ kind: "reserved", expiresAt: d.expiresAt }),
	"stock.failed": d => ({ kind: "outOfStock", lines: d.lines }),
	// Released for a payment failure or a cancellation: the order has moved on already.
	"stock.released": d => (d.reason === "EXPIRED" ? { kind: "reservationGone" } : undefined),
	// Inventory commits only once paid, and its event can reach the order before the payment's own
	// answer or event does (other topics, other paths): then it brings the payment first. Each fact
	// is ignored where the order has it already.
	"stock.committed": d => (d.paymentId ? [{ kind: "paid", paymentId: d.paymentId }, { kind: "committed" }] : { kind: "committed" }),
	"payment.authorized": d => ({ kind: "paid", paymentId: d.paymentId }),
	"payment.failed": d => ({ kind: "paymentFailed", code: d.code, reason: d.reason }),
	"payment.session_expired": d => ({ kind: "sessionExpired", sessionId: d.sessionId }),
	"payment.refunded": () => ({ kind: "refundEnded", status: "REFUNDED" }),
	"payment.refund_failed": () => ({ kind: "refundEnded", status: "REFUND_FAILED" }),
};

/** An event the order consumes, as the facts it reports, in the order they are taken. */
export function factsOf<N extends OrderConsumes>(event: { eventName: N; data: EventPayloads[N] }): Fact[] {
	const facts = (EVENT_FACTS[event.eventName] as (data: EventPayloads[N]) => Fact | Fact[] | undefined)(event.data);
	return facts === undefined ? [] : ([] as Fact[]).concat(facts);
}
