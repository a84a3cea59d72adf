import { useState } from "preact/hooks";
import { OrderList } from "../pages/MyOrders";

/** Every customer's orders, by status and customer. */
export function AdminOrders() {
	const [userId, setUserId] = useState("");
	const [draft, setDraft] = useState("");
	return (
		<section>
			<h1>Orders</h1>
			<form
				class="inline"
				role="search"
				onSubmit={e => {
					e.preventDefault();
					setUserId(draft.trim());
				}}
			>
				<label>
					Customer
					<input value={draft} onInput={e => setDraft(e.currentTarget.value)} placeholder="user name" />
				</label>
				<button type="submit">Filter</button>
			</form>
			<OrderList base="/admin/orders" userId={userId} />
		</section>
	);
}
