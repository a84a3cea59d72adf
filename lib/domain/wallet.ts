/** Wallet rules of SPEC section 6: a debit is taken whole if the balance covers it (equal included), else refused and nothing changes. */

export interface Debit {
	userId: string;
	amount: number;
}

/**
 * Many debits against the balances they draw on, in arrival order, each seeing what the ones
 * before it took: the balance after each (undefined when refused) and the final balances of the
 * wallets that changed. A wallet not in `balances` has nothing.
 */
export function applyDebits(balances: ReadonlyMap<string, number>, debits: readonly Debit[]): { after: Array<number | undefined>; changed: Map<string, number> } {
	const changed = new Map<string, number>();
	const after = debits.map(({ userId, amount }) => {
		const balance = changed.get(userId) ?? balances.get(userId) ?? 0;
		if (amount > balance) return undefined;
		changed.set(userId, balance - amount);
		return balance - amount;
	});
	return { after, changed };
}
