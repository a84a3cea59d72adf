import { percentOf } from "./money";

/** A promotion as the voucher-less discount of SPEC section 6. */
export interface Promotion {
	code: string;
	type: "PERCENT" | "FIXED";
	/** PERCENT: whole percent 1..100; FIXED: cents. */
	value: number;
	minSubtotal?: number | null;
	startsAt?: Date | null;
	endsAt?: Date | null;
	maxRedemptions?: number | null;
	redemptions: number;
}

export type PromoResult = { ok: true; discount: number } | { ok: false; code: "PROMO_INVALID"; message: string };

const invalid = (message: string): PromoResult => ({ ok: false, code: "PROMO_INVALID", message });

/** The discount a promotion gives on `subtotal` at `now`; never more than the subtotal. */
export function applyPromotion(promo: Promotion | undefined, code: string, subtotal: number, now: Date): PromoResult {
	if (!promo) return invalid(`Promo code ${code} does not exist`);
	if (promo.startsAt && now < promo.startsAt) return invalid(`Promo code ${code} is not valid yet`);
	if (promo.endsAt && now >= promo.endsAt) return invalid(`Promo code ${code} has expired`);
	if (promo.maxRedemptions != null && promo.redemptions >= promo.maxRedemptions) return invalid(`Promo code ${code} has been used up`);
	if (promo.minSubtotal != null && subtotal < promo.minSubtotal) return invalid(`Promo code ${code} needs a subtotal of at least ${promo.minSubtotal}`);
	const discount = promo.type === "PERCENT" ? percentOf(subtotal, promo.value) : Math.min(promo.value, subtotal);
	return { ok: true, discount };
}

/** Promo codes compare case-insensitively and without surrounding blanks. */
export function normalizeCode(code: string): string {
	return code.trim().toUpperCase();
}
