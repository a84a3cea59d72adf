import { streamMove, type OrderView, type StatusStep } from "../../lib/api/order-view";
import { RecentOrders } from "../../lib/api/recent-orders";

const step = (status: string): StatusStep => ({ status, at: "2026-12-04T00:00:00.000Z" });
const change = (from: string, status: string) => ({ orderId: "o", userId: "u", status, from, step: step(status), order: { status } as OrderView });

describe("streamMove: what a live stream does with an announced transition", () => {
	const sent = [step("CREATED"), step("PAYMENT_PENDING")];
	it("pushes a transition that follows the last status it sent", () => {
		expect(streamMove(sent, change("PAYMENT_PENDING", "PAYMENT_SUCCESS"))).toBe("push");
	});
	it("skips a status it sent already (its first read saw the transition)", () => {
		expect(streamMove(sent, change("CREATED", "PAYMENT_PENDING"))).toBe("skip");
	});
	it("reads the order when a transition in between was missed or the announcements crossed", () => {
		expect(streamMove(sent, change("PAYMENT_SUCCESS", "CONFIRMED"))).toBe("read");
		expect(streamMove([], change("PAYMENT_PENDING", "PAYMENT_SUCCESS"))).toBe("read");
	});
	it("reads the order for a hint that does not carry it (a node of an older version)", () => {
		expect(streamMove(sent, { orderId: "o", status: "PAYMENT_SUCCESS" })).toBe("read");
	});
});

describe("RecentOrders: the orders a gateway answered lately, followed through their broadcasts", () => {
	const view = (id: string, ...statuses: string[]) => ({ id, userId: "u", status: statuses.at(-1), statusHistory: statuses.map(step) }) as unknown as OrderView;
	const move = (orderId: string, from: string, status: string) => ({ ...change(from, status), orderId, order: { id: orderId, userId: "u", status } as OrderView });
	let clock = 0;
	const recent = () => new RecentOrders(3, 1000, () => clock);
	beforeEach(() => (clock = 0));

	it("answers a created order as its create answered it, to its owner or an admin only", () => {
		const r = recent();
		r.remember(view("a", "CREATED"));
		expect(r.snapshot("a", "u")?.statusHistory.map(s => s.status)).toEqual(["CREATED"]);
		expect(r.snapshot("a")?.id).toBe("a");
		expect(r.snapshot("a", "someone-else")).toBeUndefined();
		expect(r.snapshot("b", "u")).toBeUndefined();
	});

	it("follows transitions that follow its last status, and skips one it has", () => {
		const r = recent();
		r.remember(view("a", "CREATED"));
		r.apply(move("a", "CREATED", "PAYMENT_PENDING"));
		r.apply(move("a", "CREATED", "PAYMENT_PENDING"));
		r.apply(move("a", "PAYMENT_PENDING", "PAYMENT_SUCCESS"));
		const known = r.snapshot("a", "u")!;
		expect(known.status).toBe("PAYMENT_SUCCESS");
		expect(known.statusHistory.map(s => s.status)).toEqual(["CREATED", "PAYMENT_PENDING", "PAYMENT_SUCCESS"]);
	});

	it("forgets an order whose transitions it cannot follow: one missed, or one heard before the create answer", () => {
		const r = recent();
		r.remember(view("a", "CREATED"));
		r.apply(move("a", "PAYMENT_PENDING", "PAYMENT_SUCCESS"));
		expect(r.snapshot("a", "u")).toBeUndefined();
		r.remember(view("a", "CREATED")); // an older answer arriving late does not come back
		expect(r.snapshot("a", "u")).toBeUndefined();

		r.apply(move("b", "CREATED", "PAYMENT_PENDING"));
		r.remember(view("b", "CREATED"));
		expect(r.snapshot("b", "u")).toBeUndefined();
	});

	it("keeps the longer history when a replayed create answers again", () => {
		const r = recent();
		r.remember(view("a", "CREATED", "PAYMENT_PENDING"));
		r.remember(view("a", "CREATED"));
		expect(r.snapshot("a", "u")?.status).toBe("PAYMENT_PENDING");
	});

	it("holds an entry for its time to live, and no more entries than its bound (the oldest go)", () => {
		const r = recent();
		r.remember(view("a", "CREATED"));
		clock = 999;
		expect(r.snapshot("a", "u")).toBeDefined();
		clock = 1000;
		expect(r.snapshot("a", "u")).toBeUndefined();
		for (const id of ["b", "c", "d", "e"]) r.remember(view(id, "CREATED"));
		expect(r.size).toBe(3);
		expect(r.snapshot("b", "u")).toBeUndefined();
		expect(r.snapshot("e", "u")).toBeDefined();
	});
});
