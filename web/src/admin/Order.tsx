import { useState } from "preact/hooks";
import { api, must } from "../api/client";
import { OrderView, cancellable } from "../components/OrderView";
import { ErrorNote, Field, Loading, described, shortId, useAction, useLoad, when } from "../components/ui";

/** One order for an operator: its state, its audit timeline, and dispatch, delivery or cancellation. */
export function AdminOrder({ id }: { id: string }) {
	const order = useLoad(() => must(api.GET("/api/orders/{id}", { params: { path: { id } } })), [id]);
	const timeline = useLoad(() => must(api.GET("/api/orders/{id}/timeline", { params: { path: { id } } })), [id]);
	const [courier, setCourier] = useState("DHL");
	const [tracking, setTracking] = useState("");
	const { problem, run } = useAction();
	/** A step of the order's, then the order and its timeline read again. */
	const act = (fn: () => Promise<unknown>) =>
		run(async () => {
			await fn();
			order.reload();
			timeline.reload();
		});
	const o = order.data;
	const f = problem?.fields ?? {};
	return (
		<section>
			<p>
				<a href="#/admin/orders">← Orders</a>
			</p>
			<h1>
				Order {shortId(id)} {o && <small class="muted">of {o.userId}</small>}
			</h1>
			<ErrorNote problem={order.problem ?? problem} />
			{order.loading && !o && <Loading />}
			{o && (
				<>
					<OrderView order={o} />
					<div class="row">
						{o.status === "CONFIRMED" && (
							<form
								class="card row"
								onSubmit={e => {
									e.preventDefault();
									void act(() => must(api.POST("/api/orders/{id}/dispatch", { params: { path: { id } }, body: { courier, trackingNumber: tracking } })));
								}}
							>
								<Field id="courier" label="Courier" error={f.courier}>
									<input {...described("courier", f.courier)} required value={courier} onInput={e => setCourier(e.currentTarget.value)} />
								</Field>
								<Field id="tracking" label="Tracking number" error={f.trackingNumber}>
									<input {...described("tracking", f.trackingNumber)} required value={tracking} onInput={e => setTracking(e.currentTarget.value)} />
								</Field>
								<button type="submit" class="primary">
									Dispatch
								</button>
							</form>
						)}
						{o.status === "DISPATCHED" && (
							<button type="button" class="primary" onClick={() => void act(() => must(api.POST("/api/orders/{id}/deliver", { params: { path: { id } } })))}>
								Mark delivered
							</button>
						)}
						{cancellable(o) && (
							<button type="button" class="danger" onClick={() => void act(() => must(api.POST("/api/orders/{id}/cancel", { params: { path: { id } }, body: { reason: "CANCELLED_BY_ADMIN" } })))}>
								Cancel
							</button>
						)}
					</div>
				</>
			)}
			<h2>Audit timeline</h2>
			<ErrorNote problem={timeline.problem} />
			<ol class="history">
				{timeline.data?.map(e => (
					<li key={e.eventId}>
						<time dateTime={e.occurredAt}>{when(e.occurredAt)}</time> <code>{e.eventName}</code>{" "}
						<span class="muted">
							from {e.producer.service}@{e.producer.nodeID}
						</span>
					</li>
				))}
			</ol>
		</section>
	);
}
