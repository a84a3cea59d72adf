/** `total = subtotal − discount − voucherDiscount`, vouchers applied after the promo, never below 0. */
export interface Totals {
	subtotal: number;
	discount: number;
	voucherDiscount: number;
	total: number;
}

export function computeTotals(subtotal: number, discount: number, voucherAmounts: readonly number[]): Totals {
	const afterPromo = Math.max(0, subtotal - discount);
	const vouchers = voucherAmounts.reduce((sum, v) => sum + v, 0);
	const voucherDiscount = Math.min(vouchers, afterPromo);
	return { subtotal, discount: subtotal - afterPromo, voucherDiscount, total: afterPromo - voucherDiscount };
}
