import { useState } from "preact/hooks";
import { api, must, type CartValidation } from "../api/client";
import { cart, cartItems, promoCode, setQuantity, voucherCodes } from "../cart";
import { navigate } from "../router";
import { Empty, ErrorNote, Table, money, useAction } from "../components/ui";

/** The server's check of a cart (prices, stock, promo code, vouchers), for the cart and the checkout. */
export const validateCart = () =>
	must(api.POST("/api/cart/validate", { body: { items: cartItems(), promoCodes: promoCode.value ? [promoCode.value] : [], voucherCodes: voucherCodes.value } }));

/** Cart totals and each line's problem, as the server computed them. */
export function Totals({ check }: { check: CartValidation }) {
	return (
		<dl class="totals">
			<dt>Subtotal</dt>
			<dd>{money(check.subtotal, check.currency)}</dd>
			{check.discount > 0 && (
				<>
					<dt>Promotion</dt>
					<dd>−{money(check.discount, check.currency)}</dd>
				</>
			)}
			{check.voucherDiscount > 0 && (
				<>
					<dt>Vouchers</dt>
					<dd>−{money(check.voucherDiscount, check.currency)}</dd>
				</>
			)}
			<dt>Total</dt>
			<dd>
				<strong>{money(check.total, check.currency)}</strong>
			</dd>
		</dl>
	);
}

export function CartPage() {
	const [check, setCheck] = useState<CartValidation | null>(null);
	const { problem, run } = useAction();
	const [voucherDraft, setVoucherDraft] = useState(voucherCodes.value.join(", "));
	const lines = cart.value;
	const lineErrors = (productId: string) => check?.errors.filter(e => e.productId === productId) ?? [];
	/** The server's check of the cart as it is now: its answer (undefined if it could not be had). */
	const recheck = () =>
		run(async () => {
			voucherCodes.value = voucherDraft.split(",").map(s => s.trim()).filter(Boolean);
			const result = await validateCart();
			setCheck(result);
			// Adopt the catalogue's current prices (the customer has now seen them).
			cart.value = cart.value.map(l => ({ ...l, price: result.lines.find(r => r.productId === l.productId)?.unitPrice ?? l.price }));
			return result;
		});
	if (lines.length === 0)
		return (
			<section>
				<h1>Cart</h1>
				<Empty>
					Your cart is empty. <a href="#/">Browse the shop</a>
				</Empty>
			</section>
		);
	return (
		<section>
			<h1>Cart</h1>
			<ErrorNote problem={problem} />
			<Table caption="Cart lines" columns={["Product", "Price", "Quantity", "Check"]}>
				{lines.map(l => (
					<tr key={l.productId}>
						<td>
							<a href={`#/products/${l.productId}`}>{l.name}</a>
						</td>
						<td>{money(l.price)}</td>
						<td>
							<label class="sr-only" for={`q-${l.productId}`}>
								Quantity of {l.name}
							</label>
							<input id={`q-${l.productId}`} type="number" min={0} max={99} value={l.quantity} onChange={e => setQuantity(l.productId, Number(e.currentTarget.value))} />
							<button type="button" class="link" onClick={() => setQuantity(l.productId, 0)}>
								Remove
							</button>
						</td>
						<td class="line-errors">
							{lineErrors(l.productId).map(e => (
								<span key={e.code} class="field-error">
									{e.message}
								</span>
							))}
							{check && lineErrors(l.productId).length === 0 && <span class="ok">OK</span>}
						</td>
					</tr>
				))}
			</Table>
			<div class="row">
				<label>
					Promo code
					<input value={promoCode.value} onInput={e => (promoCode.value = e.currentTarget.value.trim().toUpperCase())} placeholder="PROMO10" />
				</label>
				<label>
					Voucher codes
					<input value={voucherDraft} onInput={e => setVoucherDraft(e.currentTarget.value)} placeholder="VCH-…, VCH-…" />
				</label>
				<button type="button" onClick={() => void recheck()}>
					Check the cart
				</button>
			</div>
			{check && (
				<div class="card">
					{check.errors
						.filter(e => !e.productId)
						.map(e => (
							<p key={e.code + e.message} class="field-error">
								{e.message}
							</p>
						))}
					<Totals check={check} />
				</div>
			)}
			<p>
				<button type="button" class="primary" onClick={async () => (await recheck())?.valid && navigate("/checkout")}>
					Checkout
				</button>
			</p>
		</section>
	);
}
