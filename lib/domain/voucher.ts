import { randomInt } from "node:crypto";

/** SPEC section 6: strictly more than the threshold earns a voucher; exactly the threshold does not. */
export function qualifiesForVoucher(orderTotal: number, thresholdCents: number): boolean {
	return orderTotal > thresholdCents;
}

/**
 * Whether an order may hold vouchers, from the codes its event carries: none means none. An event
 * without the list (from a producer of an earlier version) may.
 */
export function mayHoldVouchers(voucherCodes: readonly string[] | undefined): boolean {
	return voucherCodes === undefined || voucherCodes.length > 0;
}

/** Unambiguous letters and digits (no 0/O, 1/I/L). */
const ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/** `VCH-XXXX-XXXX-XXXX`: 12 unbiased draws from the system's CSPRNG (about 59 bits), unguessable. */
export function generateVoucherCode(draw: (max: number) => number = randomInt): string {
	const chars = Array.from({ length: 12 }, () => ALPHABET[draw(ALPHABET.length)]);
	return `VCH-${chars.slice(0, 4).join("")}-${chars.slice(4, 8).join("")}-${chars.slice(8).join("")}`;
}

export function voucherExpiry(issuedAt: Date, ttlDays: number): Date {
	return new Date(issuedAt.getTime() + ttlDays * 24 * 3600 * 1000);
}
