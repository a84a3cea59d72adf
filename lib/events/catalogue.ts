/** Every domain event of SPEC section 7, by name. Topics and subscriptions derive from this list. */
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
	"payment.refunded",
	"payment.refund_failed",
	"voucher.issued",
	"wallet.debited",
	"wallet.credited",
] as const;
export type DomainEventName = (typeof DOMAIN_EVENTS)[number];
