import { api, must } from "../api/client";
import { BarChart } from "../components/BarChart";
import { ErrorNote, Loading, money, useLoad } from "../components/ui";

/** Order analytics (GET /api/analytics/orders): the figures and their charts. */
export function Dashboard() {
	const stats = useLoad(() => must(api.GET("/api/analytics/orders")), []);
	const a = stats.data;
	return (
		<section>
			<h1>Dashboard</h1>
			<ErrorNote problem={stats.problem} />
			{stats.loading && !a && <Loading />}
			{a && (
				<>
					<div class="figures">
						<Figure label="Orders" value={String(a.totalOrders)} />
						<Figure label="Successful" value={String(a.successfulOrders)} />
						<Figure label="Pending" value={String(a.pendingOrders)} />
						<Figure label="Failed payments" value={String(a.failedPayments)} />
						<Figure label="Revenue" value={money(a.totalRevenue, a.currency)} />
						<Figure label="Revenue today" value={money(a.revenueToday, a.currency)} />
						<Figure label="Average order" value={money(a.averageOrderValue, a.currency)} />
					</div>
					<div class="charts">
						<BarChart title="Orders by status" labels={Object.keys(a.byStatus).map(s => s.replace(/_/g, " ").toLowerCase())} values={Object.values(a.byStatus)} />
						<BarChart title="Top products by revenue" labels={a.topProducts.map(p => p.name)} values={a.topProducts.map(p => p.revenue)} format={v => money(v, a.currency)} />
					</div>
				</>
			)}
		</section>
	);
}

function Figure({ label, value }: { label: string; value: string }) {
	return (
		<div class="card figure">
			<span class="muted">{label}</span>
			<strong>{value}</strong>
		</div>
	);
}
