import { useEffect, useState } from "preact/hooks";
import { api, must, type Order } from "../api/client";
import { session } from "../session";
import { route } from "../router";
import { payOnHostedPage } from "../payment";
import { OrderView, cancellable } from "../components/OrderView";
import { ErrorNote, Loading, shortId, useAction } from "../components/ui";

/** Of two reads of an order, the later one: a slow answer must not take the page back. */
const later = (next: Order) => (prev: Order | null) => {
	if (!prev) return next;
	const ahead = prev.statusHistory.length - next.statusHistory.length;
	return ahead > 0 || (ahead === 0 && prev.updatedAt > next.updatedAt) ? prev : next;
};

/** An order, tracked live: the server's stream (SSE) sends each transition as it happens. */
export function OrderPage({ id }: { id: string }) {
	const [order, setOrderState] = useState<Order | null>(null);
	const setOrder = (next: Order) => setOrderState(later(next));
	const { problem, setProblem, busy, run } = useAction();
	const [live, setLive] = useState(false);
	useEffect(() => {
		must(api.GET("/api/orders/{id}", { params: { path: { id } } })).then(setOrder, setProblem);
		// EventSource cannot send headers: the token goes as access_token (the gateway keeps it out of its logs).
		const stream = new EventSource(`/api/orders/${encodeURIComponent(id)}/stream?access_token=${encodeURIComponent(session.value?.token ?? "")}`);
		stream.addEventListener("open", () => setLive(true));
		stream.addEventListener("error", () => setLive(false));
		stream.addEventListener("order", e => setOrder(JSON.parse((e as MessageEvent).data)));
		stream.addEventListener("status", e => setOrder(JSON.parse((e as MessageEvent).data).order));
		return () => stream.close();
	}, [id]);
	const cancel = () => run(async () => setOrder(await must(api.POST("/api/orders/{id}/cancel", { params: { path: { id } }, body: {} }))));
	const payWallet = () => run(async () => setOrder((await must(api.POST("/api/orders/{id}/process-payment", { params: { path: { id } }, body: { method: "WALLET" } }))).order));
	return (
		<section>
			<p>
				<a href="#/orders">← My orders</a>
			</p>
			<h1>Order {shortId(id)}</h1>
			{route.value.query.get("placed") && <p class="notice" role="status">Thank you: your order is placed. This page follows it live.</p>}
			<p class="muted" aria-live="polite">
				{live ? "Live: updates as they happen" : "Connecting to live updates…"}
			</p>
			<ErrorNote problem={problem} />
			{!order && !problem && <Loading />}
			{order && (
				<>
					<OrderView order={order} />
					<div class="row">
						{order.status === "PAYMENT_PENDING" && order.paymentStatus === "NOT_STARTED" && (
							<>
								<button type="button" class="primary" disabled={busy} onClick={payWallet}>
									Pay from wallet
								</button>
								<button type="button" disabled={busy} onClick={() => run(() => payOnHostedPage(id))}>
									Pay by card on the provider's page
								</button>
							</>
						)}
						{order.status === "PAYMENT_PENDING" && order.payment.method === "HOSTED_CARD" && order.paymentStatus === "PENDING" && (
							<button type="button" disabled={busy} onClick={() => run(() => payOnHostedPage(id))}>
								Back to the payment page
							</button>
						)}
						{cancellable(order) && (
							<button type="button" class="danger" disabled={busy} onClick={cancel}>
								Cancel the order
							</button>
						)}
					</div>
				</>
			)}
		</section>
	);
}
