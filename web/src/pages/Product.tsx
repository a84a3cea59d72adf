import { useState } from "preact/hooks";
import { api, must } from "../api/client";
import { addToCart } from "../cart";
import { session } from "../session";
import { ErrorNote, Loading, money, useLoad } from "../components/ui";

export function ProductPage({ id }: { id: string }) {
	const product = useLoad(() => must(api.GET("/api/products/{id}", { params: { path: { id } } })), [id]);
	const [quantity, setQuantity] = useState(1);
	const [added, setAdded] = useState(false);
	const p = product.data;
	return (
		<section>
			<p>
				<a href="#/">← Shop</a>
			</p>
			<ErrorNote problem={product.problem} />
			{product.loading && <Loading />}
			{p && (
				<article class="card">
					<h1>{p.name}</h1>
					<p class="muted">
						{p.category} · SKU {p.sku}
					</p>
					{p.description && <p>{p.description}</p>}
					<p class="price">{money(p.price, p.currency)}</p>
					<p class={p.available > 0 ? "stock" : "stock out"}>{p.available > 0 ? `${p.available} available` : "Out of stock"}</p>
					{session.value ? (
						<form
							class="row"
							onSubmit={e => {
								e.preventDefault();
								addToCart({ productId: p.id, name: p.name, price: p.price }, quantity);
								setAdded(true);
							}}
						>
							<label>
								Quantity
								<input type="number" min={1} max={Math.min(99, p.available)} value={quantity} onInput={e => setQuantity(Number(e.currentTarget.value))} />
							</label>
							<button type="submit" disabled={p.available === 0}>
								Add to cart
							</button>
							{added && (
								<span role="status">
									Added. <a href="#/cart">Go to the cart</a>
								</span>
							)}
						</form>
					) : (
						<p>
							<a href="#/signin">Sign in</a> to buy.
						</p>
					)}
				</article>
			)}
		</section>
	);
}
