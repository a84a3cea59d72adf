import { useState } from "preact/hooks";
import { api, must } from "../api/client";
import { addToCart } from "../cart";
import { session } from "../session";
import { Empty, ErrorNote, Loading, Pager, money, useLoad } from "../components/ui";

type Sort = "name" | "price" | "-price";

/** The catalogue: category, search and price filters, sort, pages, what is available. */
export function Catalogue() {
	const [filters, setFilters] = useState({ search: "", category: "", minPrice: "", maxPrice: "", sort: "name" as Sort, page: 1 });
	const [draft, setDraft] = useState(filters);
	const toCents = (euros: string) => (euros.trim() === "" ? undefined : Math.round(Number(euros) * 100));
	// The first 100 categories by name (a select with more would be the wrong control anyway).
	const categories = useLoad(async () => (await must(api.GET("/api/categories", { params: { query: { pageSize: 100 } } }))).rows, []);
	const products = useLoad(
		() =>
			must(
				api.GET("/api/products", {
					params: { query: { search: filters.search || undefined, category: filters.category || undefined, minPrice: toCents(filters.minPrice), maxPrice: toCents(filters.maxPrice), sort: filters.sort, page: filters.page, pageSize: 12 } },
				}),
			),
		[filters],
	);
	const apply = (e: Event) => {
		e.preventDefault();
		setFilters({ ...draft, page: 1 });
	};
	return (
		<section>
			<h1>Shop</h1>
			<form class="filters" onSubmit={apply} role="search">
				<label>
					Search
					<input type="search" name="search" value={draft.search} onInput={e => setDraft({ ...draft, search: e.currentTarget.value })} />
				</label>
				<label>
					Category
					<select value={draft.category} onChange={e => setDraft({ ...draft, category: e.currentTarget.value })}>
						<option value="">All</option>
						{categories.data?.map(c => (
							<option key={c.name} value={c.name}>
								{c.name} ({c.products})
							</option>
						))}
					</select>
				</label>
				<label>
					Min price
					<input type="number" min="0" step="0.01" inputMode="decimal" value={draft.minPrice} onInput={e => setDraft({ ...draft, minPrice: e.currentTarget.value })} />
				</label>
				<label>
					Max price
					<input type="number" min="0" step="0.01" inputMode="decimal" value={draft.maxPrice} onInput={e => setDraft({ ...draft, maxPrice: e.currentTarget.value })} />
				</label>
				<label>
					Sort
					<select value={draft.sort} onChange={e => setFilters({ ...filters, sort: e.currentTarget.value as Sort, page: 1 })}>
						<option value="name">Name</option>
						<option value="price">Price, low first</option>
						<option value="-price">Price, high first</option>
					</select>
				</label>
				<button type="submit">Filter</button>
			</form>
			<ErrorNote problem={products.problem} />
			{products.loading && !products.data && <Loading what="Loading products" />}
			{products.data && products.data.rows.length === 0 && <Empty>No products match these filters.</Empty>}
			<ul class="grid" aria-busy={products.loading}>
				{products.data?.rows.map(p => (
					<li key={p.id} class="card product">
						<h2>
							<a href={`#/products/${p.id}`}>{p.name}</a>
						</h2>
						<p class="muted">{p.category}</p>
						<p class="price">{money(p.price, p.currency)}</p>
						<p class={p.available > 0 ? "stock" : "stock out"}>{p.available > 0 ? `${p.available} available` : "Out of stock"}</p>
						{session.value && (
							<button type="button" disabled={p.available === 0} onClick={() => addToCart({ productId: p.id, name: p.name, price: p.price })} aria-label={`Add to cart: ${p.name}`}>
								Add to cart
							</button>
						)}
					</li>
				))}
			</ul>
			{products.data && <Pager page={products.data.page} totalPages={products.data.totalPages} onPage={page => setFilters({ ...filters, page })} />}
		</section>
	);
}
