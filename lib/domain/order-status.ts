/** The order state machine of SPEC section 5. */
export const ORDER_STATUSES = [
	"CREATED",
	"PAYMENT_PENDING",
	"PAYMENT_SUCCESS",
	"CONFIRMED",
	"DISPATCHED",
	"COMPLETED",
	"FAILED",
	"PAYMENT_FAILED",
	"CANCELLED",
] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

const NEXT: Record<OrderStatus, readonly OrderStatus[]> = {
	CREATED: ["PAYMENT_PENDING", "FAILED", "CANCELLED"],
	PAYMENT_PENDING: ["PAYMENT_SUCCESS", "PAYMENT_FAILED", "CANCELLED", "FAILED"],
	// Paid but the reservation is gone: refunded and FAILED; or cancelled before confirmation.
	PAYMENT_SUCCESS: ["CONFIRMED", "FAILED", "CANCELLED"],
	CONFIRMED: ["DISPATCHED", "CANCELLED"],
	DISPATCHED: ["COMPLETED"],
	COMPLETED: [],
	FAILED: [],
	PAYMENT_FAILED: [],
	CANCELLED: [],
};

export function canTransition(from: OrderStatus, to: OrderStatus): boolean {
	return NEXT[from].includes(to);
}

/**
 * When a transition happened: now by the deciding node's clock, but never before the order's last
 * change, which another node's clock or the database's (an order's CREATED) may have dated. So an
 * order's history reads in order however far the clocks differ.
 */
export function transitionTime(now: Date, lastChange: Date): Date {
	return now.getTime() >= lastChange.getTime() ? now : new Date(lastChange.getTime());
}

export function isTerminal(status: OrderStatus): boolean {
	return NEXT[status].length === 0;
}

/** Still in the saga before dispatch: the states the watchdog looks after. */
export function isPreDispatch(status: OrderStatus): boolean {
	return status === "CREATED" || status === "PAYMENT_PENDING" || status === "PAYMENT_SUCCESS";
}
