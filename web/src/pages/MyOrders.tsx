import { useState } from "preact/hooks";
import { api, must } from "../api/client";
import { Empty, ErrorNote, Loading, Pager, StatusBadge, Table, money, shortId, useLoad, when } from "../components/ui";

export const ORDER_STATUSES = ["CREATED", "PAYMENT_PENDING", "PAYMENT_SUCCESS", "CONFIRMED", "DISPATCHED", "COMPLETED", "FAILED", "PAYMENT_FAILED", "CANCELLED"] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

/** A list of orders with a status filter (the customer's own; an admin's console passes `userId` and a link base). */
export function OrderList({ base, userId }: { base: string; userId?: string }) {
	const admin = base.startsWith("/admin");
	const [status, setStatus] = useState<OrderStatus | "">("");
	const [page, setPage] = useState(1);
	const orders = useLoad(() => must(api.GET("/api/orders", { params: { query: { status: status || undefined, page, pageSize: 20, userId: userId || undefined } } })), [status, page, userId]);
	return (
		<>
			<label class="inline">
				Status
				<select
					value={status}
					onChange={e => {
						setStatus(e.currentTarget.value as OrderStatus | "");
						setPage(1);
					}}
				>
					<option value="">Any</option>
					{ORDER_STATUSES.map(s => (
						<option key={s} value={s}>
							{s.replace(/_/g, " ").toLowerCase()}
						</option>
					))}
				</select>
			</label>
			<ErrorNote problem={orders.problem} />
			{orders.loading && !orders.data && <Loading what="Loading orders" />}
			{orders.data?.rows.length === 0 && <Empty>No orders{status ? " with this status" : " yet"}.</Empty>}
			{orders.data && orders.data.rows.length > 0 && (
				<Table caption="Orders" columns={["Order", "Placed", ...(admin ? ["Customer"] : []), "Status", "Total"]}>
					{orders.data.rows.map(o => (
						<tr key={o.id}>
							<td>
								<a href={`#${base}/${o.id}`}>{shortId(o.id)}</a>
							</td>
							<td>{when(o.createdAt)}</td>
							{admin && <td>{o.userId}</td>}
							<td>
								<StatusBadge status={o.status} />
							</td>
							<td>{money(o.total, o.currency)}</td>
						</tr>
					))}
				</Table>
			)}
			{orders.data && <Pager page={orders.data.page} totalPages={orders.data.totalPages} onPage={setPage} />}
		</>
	);
}

export function MyOrders() {
	return (
		<section>
			<h1>My orders</h1>
			<OrderList base="/orders" />
		</section>
	);
}
