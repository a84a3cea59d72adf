/** The cart rules of SPEC section 6: every failing line is reported, never only the first. */

export const MAX_LINES = 50;
export const MAX_QUANTITY = 99;

/**
 * The shape of a cart's lines in a request (fastest-validator): at most MAX_LINES of them. The
 * values (quantities, prices, products) are the cart check's to judge, line by line.
 */
export const CART_ITEMS_RULE = {
	type: "array",
	max: MAX_LINES,
	items: { type: "object", strict: "remove", props: { productId: { type: "string", min: 1, max: 100 }, quantity: { type: "number" }, price: { type: "number", optional: true } } },
} as const;

export interface CartItemInput {
	productId: string;
	quantity: number;
	/** What the client believes the unit price is; checked, never trusted. */
	price?: number;
}

export interface CatalogueEntry {
	id: string;
	sku: string;
	name: string;
	price: number;
	currency: string;
	active: boolean;
	available: number;
}

export interface CartError {
	code: "EMPTY_CART" | "TOO_MANY_LINES" | "INVALID_QUANTITY" | "DUPLICATE_LINE" | "PRODUCT_NOT_FOUND" | "PRODUCT_INACTIVE" | "PRICE_CHANGED" | "CURRENCY_MISMATCH" | "INSUFFICIENT_STOCK";
	message: string;
	productId?: string;
	field?: string;
}

export interface PricedLine {
	productId: string;
	sku: string;
	name: string;
	quantity: number;
	unitPrice: number;
	lineTotal: number;
}

export interface CartCheck {
	errors: CartError[];
	lines: PricedLine[];
	subtotal: number;
}

export function checkCart(items: readonly CartItemInput[], catalogue: ReadonlyMap<string, CatalogueEntry>, currency: string): CartCheck {
	const errors: CartError[] = [];
	if (items.length === 0) errors.push({ code: "EMPTY_CART", message: "The cart has no lines", field: "items" });
	if (items.length > MAX_LINES) errors.push({ code: "TOO_MANY_LINES", message: `A cart has at most ${MAX_LINES} lines`, field: "items" });

	const seen = new Set<string>();
	const lines: PricedLine[] = [];
	items.forEach((item, i) => {
		const field = `items[${i}]`;
		const { productId, quantity } = item;
		if (seen.has(productId)) {
			errors.push({ code: "DUPLICATE_LINE", message: "The product is on another line already; change that line's quantity", productId, field: `${field}.productId` });
			return;
		}
		seen.add(productId);
		const quantityOk = Number.isInteger(quantity) && quantity >= 1 && quantity <= MAX_QUANTITY;
		if (!quantityOk) {
			errors.push({ code: "INVALID_QUANTITY", message: `Quantity must be a whole number from 1 to ${MAX_QUANTITY}`, productId, field: `${field}.quantity` });
		}
		const product = catalogue.get(productId);
		if (!product) {
			errors.push({ code: "PRODUCT_NOT_FOUND", message: "No such product", productId, field: `${field}.productId` });
			return;
		}
		if (!product.active) {
			errors.push({ code: "PRODUCT_INACTIVE", message: `${product.name} is no longer sold`, productId, field: `${field}.productId` });
			return;
		}
		if (product.currency !== currency) {
			errors.push({ code: "CURRENCY_MISMATCH", message: `${product.name} is priced in ${product.currency}, the store in ${currency}`, productId, field });
			return;
		}
		if (item.price !== undefined && item.price !== product.price) {
			errors.push({ code: "PRICE_CHANGED", message: `The price of ${product.name} is now ${product.price}`, productId, field: `${field}.price` });
		}
		if (quantityOk && quantity > product.available) {
			errors.push({ code: "INSUFFICIENT_STOCK", message: `Only ${product.available} of ${product.name} available`, productId, field: `${field}.quantity` });
		}
		if (quantityOk) {
			lines.push({ productId, sku: product.sku, name: product.name, quantity, unitPrice: product.price, lineTotal: product.price * quantity });
		}
	});
	const subtotal = lines.reduce((sum, l) => sum + l.lineTotal, 0);
	return { errors, lines, subtotal };
}
