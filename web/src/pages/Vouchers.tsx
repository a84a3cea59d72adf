import { api, must } from "../api/client";
import { Empty, ErrorNote, Loading, StatusBadge, money, when, useLoad } from "../components/ui";

export function Vouchers() {
	const vouchers = useLoad(() => must(api.GET("/api/vouchers", { params: { query: { pageSize: 100 } } })), []);
	return (
		<section>
			<h1>Vouchers</h1>
			<p class="muted">Orders over 100.00 earn a voucher when they are dispatched. Use its code in the cart.</p>
			<ErrorNote problem={vouchers.problem} />
			{vouchers.loading && <Loading />}
			{vouchers.data?.rows.length === 0 && <Empty>No vouchers yet.</Empty>}
			<ul class="plain grid">
				{vouchers.data?.rows.map(v => (
					<li key={v.id} class="card">
						<p class="price">{money(v.amount, v.currency)}</p>
						<p>
							<code>{v.code}</code> <StatusBadge status={v.status} />
						</p>
						<p class="muted">valid until {when(v.expiresAt)}</p>
					</li>
				))}
			</ul>
		</section>
	);
}
