/**
 * The orders a gateway answered lately, kept as they stand, so a status stream opened right after
 * `POST /orders` (what the storefront does) starts without reading the order back. An entry starts
 * from the create answer and follows the order service's broadcasts with the stream's own rule
 * (streamMove): a change that follows the last known status extends it, anything else (a change
 * that came before the answer, two crossing, one missed) turns it into "unknown", and the stream
 * reads. Entries live `ttlMs`: a snapshot is only ever as fresh as the broadcasts this node heard.
 */
import { streamMove, type OrderView, type StatusChange } from "./order-view";

type Entry = { view?: OrderView; until: number };

export class RecentOrders {
	private readonly entries = new Map<string, Entry>();

	constructor(
		private readonly max: number,
		private readonly ttlMs: number,
		private readonly now: () => number = Date.now,
	) {}

	/** An order as a create answered it (a replayed create too). */
	remember(view: OrderView): void {
		const known = this.live(view.id);
		if (known && (!known.view || known.view.statusHistory.length >= view.statusHistory.length)) return;
		this.set(view.id, view);
	}

	/** A broadcast transition: the entry moves with it, or is unknown from now on. */
	apply(change: StatusChange): void {
		const known = this.live(change.orderId);
		const move = known?.view ? streamMove(known.view.statusHistory, change) : "read";
		if (move === "skip") return;
		this.set(change.orderId, move === "push" ? { ...change.order, statusHistory: [...known!.view!.statusHistory, change.step] } : undefined);
	}

	/** The order as last known here, if it is known and `userId`'s (undefined: anyone's, for an admin). */
	snapshot(orderId: string, userId?: string): OrderView | undefined {
		const view = this.live(orderId)?.view;
		return view && (userId === undefined || view.userId === userId) ? view : undefined;
	}

	get size(): number {
		return this.entries.size;
	}

	private live(orderId: string): Entry | undefined {
		const entry = this.entries.get(orderId);
		if (entry && entry.until <= this.now()) {
			this.entries.delete(orderId);
			return undefined;
		}
		return entry;
	}

	/** Kept in insertion order, renewed on every change: the oldest goes first when full. */
	private set(orderId: string, view: OrderView | undefined): void {
		this.entries.delete(orderId);
		this.entries.set(orderId, { view, until: this.now() + this.ttlMs });
		if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
	}
}
