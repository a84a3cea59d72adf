/**
 * The orders a gateway answered lately, kept as they stand, so a status stream opened right after
 * `POST /orders` (what the storefront does) starts without reading the order back. An entry starts
 * from the create answer and follows the order service's broadcasts with the stream's own rule
 * (streamMove): a change that follows the last known status extends it, anything else (a change
 * that came before the answer, two crossing, one missed) turns it into "unknown", and the stream
 * reads. Entries live `ttlMs`: a snapshot is only ever as fresh as the broadcasts this node heard.
 */
import { RecentMap } from "../recent-map";
import { streamMove, type OrderView, type StatusChange } from "./order-view";

export class RecentOrders {
	/** An order's view, or `{}` when it changed in a way this node could not follow. */
	private readonly orders: RecentMap<string, { view?: OrderView }>;

	constructor(max: number, ttlMs: number, now?: () => number) {
		this.orders = new RecentMap(max, ttlMs, now);
	}

	/** An order as a create answered it (a replayed create too). */
	remember(view: OrderView): void {
		const known = this.orders.get(view.id);
		if (known && (!known.view || known.view.statusHistory.length >= view.statusHistory.length)) return;
		this.orders.set(view.id, { view });
	}

	/** A broadcast transition: the entry moves with it, or is unknown from now on. */
	apply(change: StatusChange): void {
		const known = this.orders.get(change.orderId)?.view;
		const move = known ? streamMove(known.statusHistory, change) : "read";
		if (move === "skip") return;
		this.orders.set(change.orderId, move === "push" ? { view: { ...change.order, statusHistory: [...known!.statusHistory, change.step] } } : {});
	}

	/** The order as last known here, if it is known and `userId`'s (undefined: anyone's, for an admin). */
	snapshot(orderId: string, userId?: string): OrderView | undefined {
		const view = this.orders.get(orderId)?.view;
		return view && (userId === undefined || view.userId === userId) ? view : undefined;
	}

	get size(): number {
		return this.orders.size;
	}
}
