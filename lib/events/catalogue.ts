import type { PricedLine } from "../domain/cart";
import type { RequestedLine, Shortage } from "../domain/stock";
import type { DomainEvent } from "./envelope";

type PaymentMethod = "WALLET" | "CARD";
/** What every event of an order's status carries. */
interface OrderStatusData {
	orderId: string;
	userId: string;
	total: number;
	currency: string;
	/** The voucher codes the order holds (beyond SPEC's fields; absent from a producer of an earlier version). */
	voucherCodes?: string[];
}
interface RefundData {
	orderId: string;
	userId: string;
	paymentId: string;
	amount: number;
	currency: string;
	reason: string | null;
	error?: string | null;
}
interface WalletMovementData {
	userId: string;
	amount: number;
	balanceAfter: number;
	orderId?: string;
	reason: string;
}

/**
 * The data of every domain event of SPEC section 7, by name: publishers are checked against it
 * (`publishEvent`) and handlers read it typed (`EventOf`).
 */
export interface EventPayloads {
	"order.created": OrderStatusData & { items: PricedLine[]; subtotal: number; discount: number; voucherDiscount: number; paymentMethod: PaymentMethod | null; customer: { name?: string; email?: string } | null };
	"order.failed": OrderStatusData & { code: string; reason: string };
	"order.confirmed": OrderStatusData;
	"order.dispatched": OrderStatusData & { courier: string | null; trackingNumber: string | null };
	"order.completed": OrderStatusData;
	"order.cancelled": OrderStatusData & { reason: string };
	"stock.reserved": { orderId: string; items: RequestedLine[]; expiresAt: string };
	"stock.failed": { orderId: string; reason: "OUT_OF_STOCK"; lines: Shortage[] };
	"stock.released": { orderId: string; reason: "PAYMENT_FAILED" | "EXPIRED" | "CANCELLED" };
	/** `paymentId`: the payment whose `payment.authorized` the commit followed (absent when the order asked for it). */
	"stock.committed": { orderId: string; items: RequestedLine[]; paymentId?: string };
	"stock.updated": { productId: string; onHand: number; reserved: number; available: number };
	"payment.authorized": { orderId: string; userId: string; paymentId: string; method: PaymentMethod; amount: number; currency: string };
	"payment.failed": { orderId: string; userId: string; code: string; reason: string };
	"payment.session_created": { orderId: string; userId: string; sessionId: string; amount: number; currency: string; expiresAt: string };
	"payment.session_expired": { orderId: string; userId: string; sessionId: string };
	"payment.refunded": RefundData;
	"payment.refund_failed": RefundData;
	"voucher.issued": { voucherId: string; code: string; userId: string; orderId: string; amount: number; currency: string };
	"wallet.debited": WalletMovementData;
	"wallet.credited": WalletMovementData;
}
export type EventName = keyof EventPayloads;

/** Every domain event, by name. Topics and subscriptions derive from this list. */
export const DOMAIN_EVENTS = [
	"order.created",
	"order.failed",
	"order.confirmed",
	"order.dispatched",
	"order.completed",
	"order.cancelled",
	"stock.reserved",
	"stock.failed",
	"stock.released",
	"stock.committed",
	"stock.updated",
	"payment.authorized",
	"payment.failed",
	"payment.session_created",
	"payment.session_expired",
	"payment.refunded",
	"payment.refund_failed",
	"voucher.issued",
	"wallet.debited",
	"wallet.credited",
] as const satisfies readonly EventName[];

/** The list above names every event of the catalogue: a name left out fails to compile. */
const complete: Exclude<EventName, (typeof DOMAIN_EVENTS)[number]> extends never ? true : never = true;
void complete;

/** An event as its handlers see it: its data typed by its name. */
export type EventOf<N extends EventName> = DomainEvent<EventPayloads[N]> & { eventName: N };
