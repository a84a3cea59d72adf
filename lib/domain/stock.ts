/** Stock rules of SPEC section 6 (Inventory): `available = onHand − reserved`, all lines or none. */

export interface StockLevel {
	productId: string;
	onHand: number;
	reserved: number;
	active: boolean;
}

export interface RequestedLine {
	productId: string;
	quantity: number;
}

export interface Shortage {
	productId: string;
	requested: number;
	available: number;
}

export const available = (s: Pick<StockLevel, "onHand" | "reserved">) => s.onHand - s.reserved;

/** The lines that cannot be reserved (unknown or inactive products count as 0 available). */
export function findShortages(lines: readonly RequestedLine[], levels: ReadonlyMap<string, StockLevel>): Shortage[] {
	return lines.flatMap(line => {
		const level = levels.get(line.productId);
		const free = level && level.active ? available(level) : 0;
		return line.quantity > free ? [{ productId: line.productId, requested: line.quantity, available: Math.max(0, free) }] : [];
	});
}

/** Sums quantities per product, so a product named twice is checked and reserved once. */
export function mergeLines(lines: readonly RequestedLine[]): RequestedLine[] {
	const byProduct = new Map<string, number>();
	for (const l of lines) byProduct.set(l.productId, (byProduct.get(l.productId) ?? 0) + l.quantity);
	return [...byProduct].map(([productId, quantity]) => ({ productId, quantity })).sort((a, b) => a.productId.localeCompare(b.productId));
}
