/**
 * An order as the API answers it (SPEC section 5), and the live stream's use of the hint the order
 * service broadcasts on every transition.
 */
import type { OrderRow } from "../../services/order.saga";

export type HistoryEntry = { status: string; at: Date | string; reason: string | null };
export interface StatusStep {
	status: string;
	at: string;
	reason?: string;
}

export const statusStep = (h: HistoryEntry): StatusStep => ({ status: h.status, at: new Date(h.at).toISOString(), reason: h.reason ?? undefined });

export const orderView = (o: OrderRow, history: HistoryEntry[]) => ({
	id: o.id,
	userId: o.user_id,
	status: o.status,
	paymentStatus: o.payment_status,
	// jsonb keeps keys in its own order; answer them in the contract's.
	items: o.items.map(l => ({ productId: l.productId, sku: l.sku, name: l.name, quantity: l.quantity, unitPrice: l.unitPrice, lineTotal: l.lineTotal })),
	subtotal: Number(o.subtotal),
	discount: Number(o.discount),
	voucherDiscount: Number(o.voucher_discount),
	total: Number(o.total),
	currency: o.currency,
	promoCodes: o.promo_codes,
	voucherCodes: o.voucher_codes,
	shippingAddress: o.shipping_address,
	customer: o.customer ?? undefined,
	payment: { method: o.payment_method ?? undefined, paymentId: o.payment_id ?? undefined, sessionId: o.payment_session_id ?? undefined, failureReason: o.payment_failure_reason ?? undefined },
	failureReason: o.failure_reason ?? undefined,
	failureCode: o.failure_code ?? undefined,
	failureDetails: o.failure_details ?? undefined,
	shipment: o.courier ? { courier: o.courier, trackingNumber: o.tracking_number } : undefined,
	statusHistory: history.map(statusStep),
	createdAt: new Date(o.created_at).toISOString(),
	updatedAt: new Date(o.updated_at).toISOString(),
});
export type OrderView = ReturnType<typeof orderView>;

/**
 * `order.status-changed`, broadcast after each transition commits (a hint for live tracking, not a
 * domain event): the transition and the order as it left it (its `statusHistory` left empty), so a
 * stream pushes it without reading the order back.
 */
export interface StatusChange {
	orderId: string;
	userId: string;
	status: string;
	from: string;
	step: StatusStep;
	order: OrderView;
}

/**
 * What a stream that has sent `sent` does with a change. An order's statuses never repeat (its state
 * machine has no cycle), so a status already sent was seen by a read; a change that follows the last
 * one sent is pushed as it is; anything else (a hint lost, or two from different nodes crossing)
 * needs a read of the order.
 */
export function streamMove(sent: readonly StatusStep[], change: Pick<StatusChange, "status"> & Partial<StatusChange>): "skip" | "push" | "read" {
	if (sent.some(s => s.status === change.status)) return "skip";
	if (change.step && change.order && sent.at(-1)?.status === change.from) return "push";
	return "read";
}

