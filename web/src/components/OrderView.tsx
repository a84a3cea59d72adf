import type { Order } from "../api/client";
import { StatusBadge, Table, money, when } from "./ui";

const LIFECYCLE = ["CREATED", "PAYMENT_PENDING", "PAYMENT_SUCCESS", "CONFIRMED", "DISPATCHED", "COMPLETED"];
const ENDED = new Set(["FAILED", "PAYMENT_FAILED", "CANCELLED"]);

/** The order's progress over its lifecycle (a failure shown as such), its lines, totals and history. */
export function OrderView({ order }: { order: Order }) {
	const reached = ENDED.has(order.status) ? Math.max(0, ...order.statusHistory.map(h => LIFECYCLE.indexOf(h.status))) : LIFECYCLE.indexOf(order.status);
	const percent = Math.round(((reached + 1) / LIFECYCLE.length) * 100);
	return (
		<>
			<p>
				<StatusBadge status={order.status} /> <span class="muted">payment {order.paymentStatus.replace(/_/g, " ").toLowerCase()}</span>
			</p>
			<div class={`progress${ENDED.has(order.status) ? " ended" : ""}`} role="progressbar" aria-label="Order progress" aria-valuemin={0} aria-valuemax={100} aria-valuenow={percent} aria-valuetext={order.status}>
				<div style={{ width: `${percent}%` }} />
			</div>
			<ol class="lifecycle">
				{LIFECYCLE.map((s, i) => (
					<li key={s} class={i <= reached ? "done" : ""}>
						{s.replace(/_/g, " ").toLowerCase()}
					</li>
				))}
			</ol>
			{(order.failureReason || order.payment.failureReason) && (
				<p class="error" role="alert">
					{order.status === "PAYMENT_FAILED" ? "Payment failed: " : ""}
					{order.payment.failureReason ?? order.failureReason}
				</p>
			)}
			<Table caption="Order lines" columns={["Product", "Quantity", "Price", "Total"]}>
				{order.items.map(l => (
					<tr key={l.productId}>
						<td>{l.name}</td>
						<td>{l.quantity}</td>
						<td>{money(l.unitPrice, order.currency)}</td>
						<td>{money(l.lineTotal, order.currency)}</td>
					</tr>
				))}
			</Table>
			<p>
				Total <strong>{money(order.total, order.currency)}</strong>
				{order.discount + order.voucherDiscount > 0 && <span class="muted"> (saved {money(order.discount + order.voucherDiscount, order.currency)})</span>}
				{order.payment.method && <span class="muted"> · {order.payment.method.replace("_", " ").toLowerCase()}</span>}
			</p>
			{order.shipment && (
				<p>
					Sent with {order.shipment.courier}, tracking number {order.shipment.trackingNumber}
				</p>
			)}
			<h2>History</h2>
			<ol class="history">
				{order.statusHistory.map(h => (
					<li key={h.at + h.status}>
						<time dateTime={h.at}>{when(h.at)}</time> <StatusBadge status={h.status} />
						{h.reason && <span class="muted"> {h.reason}</span>}
					</li>
				))}
			</ol>
		</>
	);
}

export const cancellable = (o: Order) => ["CREATED", "PAYMENT_PENDING", "PAYMENT_SUCCESS", "CONFIRMED"].includes(o.status);
