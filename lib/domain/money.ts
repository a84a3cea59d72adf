/** Money is an integer number of minor units (cents); these helpers never produce a fraction. */

export function isCents(value: unknown): value is number {
	return typeof value === "number" && Number.isSafeInteger(value);
}

/** `percent` % of `amount`, rounded half up to the cent (SPEC section 6), in integer arithmetic. */
export function percentOf(amount: number, percent: number): number {
	if (!isCents(amount) || amount < 0) throw new RangeError(`amount must be non-negative cents, got ${amount}`);
	if (!Number.isInteger(percent) || percent < 0 || percent > 100) throw new RangeError(`percent must be an integer 0..100, got ${percent}`);
	return divRoundHalfUp(amount * percent, 100);
}

/** `a / b` rounded half up, for non-negative integers, with integer operations only (`%` is exact). */
export function divRoundHalfUp(a: number, b: number): number {
	if (!isCents(a) || !isCents(b) || a < 0 || b <= 0) throw new RangeError(`divRoundHalfUp needs integers a >= 0, b > 0; got ${a}, ${b}`);
	const quotient = (a - (a % b)) / b;
	return 2 * (a % b) >= b ? quotient + 1 : quotient;
}

/** Sums cents, refusing anything that is not a safe integer. */
export function sumCents(values: readonly number[]): number {
	let total = 0;
	for (const v of values) {
		if (!isCents(v)) throw new RangeError(`not an amount in cents: ${v}`);
		total += v;
	}
	if (!Number.isSafeInteger(total)) throw new RangeError("sum of cents overflows");
	return total;
}

/** `1234, "EUR"` → `"12.34 EUR"`, by integer division (no float ever touches the amount). */
export function formatMoney(cents: number, currency: string): string {
	if (!isCents(cents)) throw new RangeError(`not an amount in cents: ${cents}`);
	const sign = cents < 0 ? "-" : "";
	const abs = Math.abs(cents);
	return `${sign}${(abs - (abs % 100)) / 100}.${String(abs % 100).padStart(2, "0")} ${currency}`;
}
