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

export interface Allocation {
	orderId: string;
	lines: RequestedLine[];
	/** Empty when every line is reserved; else the short lines, and nothing of the order is reserved. */
	shortages: Shortage[];
}

/**
 * Reserves for many orders at once against the same levels: each order all-or-nothing, in arrival
 * order, seeing what the orders before it took. `levels` is not changed; the total taken per product
 * comes back with the allocations.
 */
export function allocate(orders: ReadonlyArray<{ orderId: string; lines: readonly RequestedLine[] }>, levels: ReadonlyMap<string, StockLevel>): { allocations: Allocation[]; taken: Map<string, number> } {
	const left = new Map([...levels].map(([id, level]) => [id, { ...level }]));
	const taken = new Map<string, number>();
	const allocations = orders.map(({ orderId, lines: requested }) => {
		const lines = mergeLines(requested);
		const shortages = findShortages(lines, left);
		if (shortages.length === 0) {
			for (const l of lines) {
				left.get(l.productId)!.reserved += l.quantity;
				taken.set(l.productId, (taken.get(l.productId) ?? 0) + l.quantity);
			}
		}
		return { orderId, lines, shortages };
	});
	return { allocations, taken };
}
