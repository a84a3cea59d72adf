import { computed, effect, signal } from "@preact/signals";

/** A cart line as the browser keeps it: the product, how many, and the price the customer saw. */
export interface CartLine {
	productId: string;
	name: string;
	quantity: number;
	price: number;
}

const KEY = "checkout.cart";
function stored(): CartLine[] {
	try {
		const lines = JSON.parse(localStorage.getItem(KEY) ?? "[]");
		return Array.isArray(lines) ? lines : [];
	} catch {
		return [];
	}
}
export const cart = signal<CartLine[]>(stored());
export const promoCode = signal("");
export const voucherCodes = signal<string[]>([]);
effect(() => localStorage.setItem(KEY, JSON.stringify(cart.value)));
export const cartCount = computed(() => cart.value.reduce((n, l) => n + l.quantity, 0));

export function addToCart(line: Omit<CartLine, "quantity">, quantity = 1) {
	const existing = cart.value.find(l => l.productId === line.productId);
	cart.value = existing ? cart.value.map(l => (l === existing ? { ...l, quantity: Math.min(99, l.quantity + quantity) } : l)) : [...cart.value, { ...line, quantity }];
}
export function setQuantity(productId: string, quantity: number) {
	cart.value = quantity <= 0 ? cart.value.filter(l => l.productId !== productId) : cart.value.map(l => (l.productId === productId ? { ...l, quantity: Math.min(99, quantity) } : l));
}
export function clearCart() {
	cart.value = [];
	promoCode.value = "";
	voucherCodes.value = [];
}
/** The cart as the API takes it (with the prices seen, so a change is reported as PRICE_CHANGED). */
export const cartItems = () => cart.value.map(l => ({ productId: l.productId, quantity: l.quantity, price: l.price }));
