import { useEffect, useState } from "preact/hooks";
import { api, must, type CartValidation } from "../api/client";
import { cartItems, clearCart, promoCode, voucherCodes } from "../cart";
import { navigate } from "../router";
import { session } from "../session";
import { payOnHostedPage, untilPayable } from "../payment";
import { ErrorNote, Field, Loading, described, money, useAction } from "../components/ui";
import { Totals, validateCart } from "./Cart";

const STEPS = ["Shipping", "Review", "Payment"] as const;
const ADDRESS_FIELDS = [
	["name", "Full name", "name"],
	["line1", "Address", "address-line1"],
	["line2", "Address line 2 (optional)", "address-line2"],
	["city", "City", "address-level2"],
	["postalCode", "Postal code", "postal-code"],
	["country", "Country (2 letters, e.g. DE)", "country"],
] as const;
type Address = Record<(typeof ADDRESS_FIELDS)[number][0], string>;
type Method = "WALLET" | "CARD" | "HOSTED";
const TEST_CARDS = [
	["tok_visa", "Visa (succeeds)"],
	["tok_chargeDeclined", "Declined card"],
	["tok_insufficientFunds", "Card without funds"],
] as const;

/** Checkout in steps: shipping address → review with the server's totals → payment → the order's page. */
export function Checkout() {
	const [step, setStep] = useState(0);
	const [address, setAddress] = useState<Address>({ name: "", line1: "", line2: "", city: "", postalCode: "", country: "DE" });
	const [email, setEmail] = useState(`${session.value?.sub ?? ""}@example.com`);
	const [check, setCheck] = useState<CartValidation | null>(null);
	const [method, setMethod] = useState<Method>("WALLET");
	const [card, setCard] = useState<string>("tok_visa");
	const { problem, busy, run } = useAction();
	// One key per checkout: a double submit or a retry after a lost answer places one order.
	const [idempotencyKey] = useState(() => crypto.randomUUID());
	const fieldError = (f: string) => problem?.fields[`shippingAddress.${f}`];
	// The server's field errors belong to the shipping step.
	useEffect(() => {
		if (Object.keys(problem?.fields ?? {}).some(f => f.startsWith("shippingAddress") || f.startsWith("customer"))) setStep(0);
	}, [problem]);

	const review = (e: Event) => {
		e.preventDefault();
		void run(async () => {
			setCheck(await validateCart());
			setStep(1);
		});
	};
	const place = (e: Event) => {
		e.preventDefault();
		void run(async () => {
			const shippingAddress = { ...address, line2: address.line2 || undefined, country: address.country.toUpperCase() };
			const order = await must(
				api.POST("/api/orders", {
					params: { header: { "Idempotency-Key": idempotencyKey } },
					body: {
						items: cartItems(),
						promoCodes: promoCode.value ? [promoCode.value] : [],
						voucherCodes: voucherCodes.value,
						shippingAddress,
						customer: { name: address.name, email: email || undefined },
						payment: method === "WALLET" ? { method: "WALLET" } : method === "CARD" ? { method: "CARD", cardToken: card } : undefined,
					},
				}),
			);
			clearCart();
			if (method === "HOSTED" && (await untilPayable(order.id)) === "PAYMENT_PENDING") return payOnHostedPage(order.id);
			navigate(`/orders/${order.id}?placed=1`);
		});
	};
	return (
		<section class="narrow">
			<h1>Checkout</h1>
			<ol class="steps" aria-label="Checkout steps">
				{STEPS.map((s, i) => (
					<li key={s} aria-current={i === step ? "step" : undefined} class={i < step ? "done" : ""}>
						{s}
					</li>
				))}
			</ol>
			<ErrorNote problem={problem} />
			{step === 0 && (
				<form onSubmit={review} class="card">
					<h2>Shipping address</h2>
					{ADDRESS_FIELDS.map(([f, label, auto]) => (
						<Field key={f} id={`ship-${f}`} label={label} error={fieldError(f)}>
							<input
								{...described(`ship-${f}`, fieldError(f))}
								required={f !== "line2"}
								maxLength={f === "country" ? 2 : 200}
								autoComplete={auto}
								value={address[f]}
								onInput={e => setAddress({ ...address, [f]: e.currentTarget.value })}
							/>
						</Field>
					))}
					<Field id="ship-email" label="E-mail for updates (optional)" error={problem?.fields["customer.email"]}>
						<input {...described("ship-email", problem?.fields["customer.email"])} type="email" autoComplete="email" value={email} onInput={e => setEmail(e.currentTarget.value)} />
					</Field>
					<button type="submit" class="primary" disabled={busy}>
						Review the order
					</button>
				</form>
			)}
			{step === 1 && check && (
				<div class="card">
					<h2>Review</h2>
					<ul class="plain">
						{check.lines.map(l => (
							<li key={l.productId}>
								{l.quantity} × {l.name} — {money(l.lineTotal, check.currency)}
							</li>
						))}
					</ul>
					{!check.valid && <ErrorNote problem={{ status: 422, code: "CART_INVALID", message: "Some lines of the cart need a change.", fields: {}, lines: check.errors }} />}
					<Totals check={check} />
					<p class="muted">
						To {address.name}, {address.line1}, {address.postalCode} {address.city}, {address.country.toUpperCase()}
					</p>
					<div class="row">
						<button type="button" onClick={() => setStep(0)}>
							Back
						</button>
						<button type="button" class="primary" disabled={!check.valid} onClick={() => setStep(2)}>
							Continue to payment
						</button>
					</div>
				</div>
			)}
			{step === 2 && check && (
				<form onSubmit={place} class="card">
					<h2>Payment of {money(check.total, check.currency)}</h2>
					<fieldset>
						<legend>Pay with</legend>
						<label>
							<input type="radio" name="method" checked={method === "WALLET"} onChange={() => setMethod("WALLET")} /> Wallet balance
						</label>
						<label>
							<input type="radio" name="method" checked={method === "CARD"} onChange={() => setMethod("CARD")} /> Card (test token)
						</label>
						<label>
							<input type="radio" name="method" checked={method === "HOSTED"} onChange={() => setMethod("HOSTED")} /> Card on the payment provider's page
						</label>
					</fieldset>
					{method === "CARD" && (
						<Field id="card" label="Test card">
							<select id="card" value={card} onChange={e => setCard(e.currentTarget.value)}>
								{TEST_CARDS.map(([t, label]) => (
									<option key={t} value={t}>
										{label}
									</option>
								))}
							</select>
						</Field>
					)}
					<div class="row">
						<button type="button" onClick={() => setStep(1)}>
							Back
						</button>
						<button type="submit" class="primary" disabled={busy}>
							{method === "HOSTED" ? "Place order and pay" : "Place order"}
						</button>
					</div>
					{busy && <Loading what="Placing the order" />}
				</form>
			)}
		</section>
	);
}
