import { useState } from "preact/hooks";
import { api, must } from "../api/client";
import { ErrorNote, Field, Loading, Pager, Table, described, useAction, useLoad } from "../components/ui";

const EMPTY = { sku: "", name: "", category: "", price: "", stock: "0", description: "" };

/** Stock levels with restock, and products created or changed. */
export function Inventory() {
	const [page, setPage] = useState(1);
	const levels = useLoad(() => must(api.GET("/api/inventory", { params: { query: { page, pageSize: 20 } } })), [page]);
	const { problem, run } = useAction();
	const [draft, setDraft] = useState(EMPTY);
	const [editing, setEditing] = useState<string | null>(null);
	const [notice, setNotice] = useState("");
	/** A change, then its notice and the levels read again. */
	const act = (fn: () => Promise<string>) =>
		run(async () => {
			setNotice("");
			setNotice(await fn());
			levels.reload();
		});
	const restock = (productId: string, quantity: number) => act(async () => (await must(api.POST("/api/inventory/{productId}/restock", { params: { path: { productId } }, body: { quantity } })), `Restocked ${quantity}.`));
	const save = (e: Event) => {
		e.preventDefault();
		const fields = { name: draft.name, category: draft.category, description: draft.description, price: Math.round(Number(draft.price) * 100) };
		void act(async () => {
			if (editing) {
				await must(api.PATCH("/api/products/{id}", { params: { path: { id: editing } }, body: fields }));
				setEditing(null);
			} else await must(api.POST("/api/products", { body: { ...fields, sku: draft.sku, stock: Number(draft.stock) } }));
			setDraft(EMPTY);
			return editing ? "Product saved." : "Product created.";
		});
	};
	const edit = async (id: string) => {
		const p = await must(api.GET("/api/products/{id}", { params: { path: { id } } }));
		setEditing(id);
		setDraft({ sku: p.sku, name: p.name, category: p.category, price: (p.price / 100).toFixed(2), stock: "0", description: p.description });
	};
	const f = problem?.fields ?? {};
	return (
		<section>
			<h1>Inventory</h1>
			<ErrorNote problem={problem} />
			{notice && (
				<p class="notice" role="status">
					{notice}
				</p>
			)}
			{levels.loading && !levels.data && <Loading />}
			{levels.data && (
				<Table caption="Stock levels" columns={["SKU", "Product", "On hand", "Reserved", "Available", "Actions"]}>
					{levels.data.rows.map(l => (
						<tr key={l.productId}>
							<td>{l.sku}</td>
							<td>{l.name}</td>
							<td>{l.onHand}</td>
							<td>{l.reserved}</td>
							<td>{l.available}</td>
							<td>
								<RestockForm label={l.name} onRestock={q => restock(l.productId, q)} />
								<button type="button" class="link" onClick={() => void edit(l.productId)}>
									Edit
								</button>
							</td>
						</tr>
					))}
				</Table>
			)}
			{levels.data && <Pager page={levels.data.page} totalPages={levels.data.totalPages} onPage={setPage} />}
			<form class="card" onSubmit={save}>
				<h2>{editing ? `Edit ${draft.sku}` : "New product"}</h2>
				{!editing && (
					<Field id="p-sku" label="SKU" error={f.sku}>
						<input {...described("p-sku", f.sku)} required value={draft.sku} onInput={e => setDraft({ ...draft, sku: e.currentTarget.value })} />
					</Field>
				)}
				<Field id="p-name" label="Name" error={f.name}>
					<input {...described("p-name", f.name)} required value={draft.name} onInput={e => setDraft({ ...draft, name: e.currentTarget.value })} />
				</Field>
				<Field id="p-category" label="Category" error={f.category}>
					<input {...described("p-category", f.category)} required value={draft.category} onInput={e => setDraft({ ...draft, category: e.currentTarget.value })} />
				</Field>
				<Field id="p-price" label="Price" error={f.price}>
					<input {...described("p-price", f.price)} type="number" min="0.01" step="0.01" required value={draft.price} onInput={e => setDraft({ ...draft, price: e.currentTarget.value })} />
				</Field>
				{!editing && (
					<Field id="p-stock" label="Initial stock" error={f.stock}>
						<input {...described("p-stock", f.stock)} type="number" min="0" step="1" required value={draft.stock} onInput={e => setDraft({ ...draft, stock: e.currentTarget.value })} />
					</Field>
				)}
				<Field id="p-description" label="Description">
					<textarea id="p-description" rows={2} value={draft.description} onInput={e => setDraft({ ...draft, description: e.currentTarget.value })} />
				</Field>
				<div class="row">
					<button type="submit" class="primary">
						{editing ? "Save" : "Create"}
					</button>
					{editing && (
						<button
							type="button"
							onClick={() => {
								setEditing(null);
								setDraft(EMPTY);
							}}
						>
							Cancel
						</button>
					)}
				</div>
			</form>
		</section>
	);
}

function RestockForm({ label, onRestock }: { label: string; onRestock: (quantity: number) => void }) {
	const [quantity, setQuantity] = useState(10);
	return (
		<form
			class="inline"
			onSubmit={e => {
				e.preventDefault();
				onRestock(quantity);
			}}
		>
			<input type="number" min={1} value={quantity} onInput={e => setQuantity(Number(e.currentTarget.value))} aria-label={`Units to add to ${label}`} />
			<button type="submit">Restock</button>
		</form>
	);
}
