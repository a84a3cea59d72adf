import { divRoundHalfUp, formatMoney, percentOf, sumCents } from "../../lib/domain/money";
import { checkCart, type CatalogueEntry } from "../../lib/domain/cart";
import { applyPromotion, normalizeCode, type Promotion } from "../../lib/domain/promotion";
import { computeTotals } from "../../lib/domain/totals";
import { ORDER_STATUSES, canTransition, isTerminal, transitionTime } from "../../lib/domain/order-status";
import { generateVoucherCode, mayHoldVouchers, qualifiesForVoucher, voucherExpiry } from "../../lib/domain/voucher";
import fc from "fast-check";
import { allocate, findShortages, mergeLines } from "../../lib/domain/stock";
import { CircuitBreaker } from "../../lib/circuit-breaker";
import { queueVerdict } from "../../lib/domain/backlog";
import { applyDebits } from "../../lib/domain/wallet";
import { EVENT_FACTS, allowed, factsOf, cancel, deadlineOf, decide, giveUp, hostedPaymentRefusal, sessionOpened, type OrderState } from "../../lib/domain/saga";
import { redirectProblem } from "../../lib/domain/redirect";

describe("money", () => {
	it("rounds percent discounts half up to the cent", () => {
		expect(percentOf(2000, 10)).toBe(200); // PROMO10 on 2 x 10.00
		expect(percentOf(1005, 10)).toBe(101); // 100.5 → 101
		expect(percentOf(1004, 10)).toBe(100); // 100.4 → 100
		expect(percentOf(15, 10)).toBe(2); // 1.5 → 2
		expect(percentOf(0, 10)).toBe(0);
		expect(percentOf(999, 100)).toBe(999);
	});
	it("refuses fractions and out-of-range percents", () => {
		expect(() => percentOf(10.5, 10)).toThrow(RangeError);
		expect(() => percentOf(100, 10.5)).toThrow(RangeError);
		expect(() => percentOf(100, 101)).toThrow(RangeError);
		expect(() => percentOf(-1, 10)).toThrow(RangeError);
	});
	it("divides rounding half up with integers only", () => {
		expect([divRoundHalfUp(5, 2), divRoundHalfUp(4, 3), divRoundHalfUp(5, 3), divRoundHalfUp(0, 7), divRoundHalfUp(9007199254740991, 1)]).toEqual([3, 1, 2, 0, 9007199254740991]);
		expect(() => divRoundHalfUp(1, 0)).toThrow(RangeError);
	});
	it("formats cents without floating point", () => {
		expect(formatMoney(1234, "EUR")).toBe("12.34 EUR");
		expect(formatMoney(5, "EUR")).toBe("0.05 EUR");
		expect(formatMoney(-1050, "USD")).toBe("-10.50 USD");
		expect(() => formatMoney(1.5, "EUR")).toThrow(RangeError);
	});
	it("sums cents and refuses what is not cents", () => {
		expect(sumCents([1, 2, 3])).toBe(6);
		expect(() => sumCents([1, 0.5])).toThrow(RangeError);
	});
});

describe("checkCart", () => {
	const product = (id: string, over: Partial<CatalogueEntry> = {}): CatalogueEntry => ({
		id,
		sku: `SKU-${id}`,
		name: `Product ${id}`,
		price: 1000,
		currency: "EUR",
		active: true,
		available: 5,
		...over,
	});
	const catalogue = new Map([
		["a", product("a")],
		["b", product("b", { price: 250, available: 1 })],
		["off", product("off", { active: false })],
		["usd", product("usd", { currency: "USD" })],
	]);
	const codes = (items: Parameters<typeof checkCart>[0]) => checkCart(items, catalogue, "EUR").errors.map(e => e.code);

	it("prices a valid cart from the catalogue", () => {
		const r = checkCart([{ productId: "a", quantity: 2 }, { productId: "b", quantity: 1, price: 250 }], catalogue, "EUR");
		expect(r.errors).toEqual([]);
		expect(r.lines).toEqual([
			{ productId: "a", sku: "SKU-a", name: "Product a", quantity: 2, unitPrice: 1000, lineTotal: 2000 },
			{ productId: "b", sku: "SKU-b", name: "Product b", quantity: 1, unitPrice: 250, lineTotal: 250 },
		]);
		expect(r.subtotal).toBe(2250);
	});
	it("accepts a quantity equal to the stock and refuses one more", () => {
		expect(codes([{ productId: "a", quantity: 5 }])).toEqual([]);
		const r = checkCart([{ productId: "a", quantity: 6 }], catalogue, "EUR");
		expect(r.errors).toEqual([expect.objectContaining({ code: "INSUFFICIENT_STOCK", productId: "a", field: "items[0].quantity" })]);
	});
	it.each([0, 100, 1.5, -1])("refuses quantity %p", quantity => {
		expect(codes([{ productId: "a", quantity }])).toEqual(["INVALID_QUANTITY"]);
	});
	it("refuses an empty cart and more than 50 lines", () => {
		expect(codes([])).toEqual(["EMPTY_CART"]);
		const many = Array.from({ length: 51 }, (_, i) => ({ productId: `p${i}`, quantity: 1 }));
		expect(codes(many)).toContain("TOO_MANY_LINES");
	});
	it("names every failing line, not only the first", () => {
		const r = checkCart(
			[
				{ productId: "nope", quantity: 1 },
				{ productId: "a", quantity: 1, price: 999 },
				{ productId: "off", quantity: 1 },
				{ productId: "b", quantity: 2 },
				{ productId: "usd", quantity: 1 },
				{ productId: "a", quantity: 1 },
			],
			catalogue,
			"EUR",
		);
		expect(r.errors.map(e => [e.code, e.field])).toEqual([
			["PRODUCT_NOT_FOUND", "items[0].productId"],
			["PRICE_CHANGED", "items[1].price"],
			["PRODUCT_INACTIVE", "items[2].productId"],
			["INSUFFICIENT_STOCK", "items[3].quantity"],
			["CURRENCY_MISMATCH", "items[4]"],
			["DUPLICATE_LINE", "items[5].productId"],
		]);
	});
});

describe("applyPromotion", () => {
	const now = new Date("2026-06-01T12:00:00Z");
	const promo = (over: Partial<Promotion> = {}): Promotion => ({ code: "PROMO10", type: "PERCENT", value: 10, redemptions: 0, ...over });

	it("takes PROMO10 off 2 x 10.00 as 2.00", () => {
		expect(applyPromotion(promo(), "PROMO10", 2000, now)).toEqual({ ok: true, discount: 200 });
	});
	it("takes a fixed amount, never more than the subtotal", () => {
		expect(applyPromotion(promo({ type: "FIXED", value: 500 }), "X", 2000, now)).toEqual({ ok: true, discount: 500 });
		expect(applyPromotion(promo({ type: "FIXED", value: 5000 }), "X", 2000, now)).toEqual({ ok: true, discount: 2000 });
	});
	it.each([
		["unknown", undefined, /does not exist/],
		["expired", promo({ endsAt: new Date("2026-05-31T00:00:00Z") }), /has expired/],
		["not started", promo({ startsAt: new Date("2026-06-02T00:00:00Z") }), /not valid yet/],
		["exhausted", promo({ maxRedemptions: 3, redemptions: 3 }), /used up/],
		["below its minimum", promo({ minSubtotal: 5000 }), /at least 5000/],
	])("refuses a promo code that is %s", (_what, p, message) => {
		const r = applyPromotion(p, "CODE", 2000, now);
		expect(r).toEqual({ ok: false, code: "PROMO_INVALID", message: expect.stringMatching(message) });
	});
	it("accepts the last redemption and the minimum subtotal exactly", () => {
		expect(applyPromotion(promo({ maxRedemptions: 3, redemptions: 2, minSubtotal: 2000 }), "X", 2000, now).ok).toBe(true);
	});
	it("normalizes codes", () => expect(normalizeCode("  promo10 ")).toBe("PROMO10"));
});

describe("computeTotals", () => {
	it("subtracts the promo, then vouchers, never below zero", () => {
		expect(computeTotals(2000, 200, [])).toEqual({ subtotal: 2000, discount: 200, voucherDiscount: 0, total: 1800 });
		expect(computeTotals(2000, 200, [500, 500])).toEqual({ subtotal: 2000, discount: 200, voucherDiscount: 1000, total: 800 });
		expect(computeTotals(1000, 200, [500, 500])).toEqual({ subtotal: 1000, discount: 200, voucherDiscount: 800, total: 0 });
		expect(computeTotals(1000, 1500, [])).toEqual({ subtotal: 1000, discount: 1000, voucherDiscount: 0, total: 0 });
	});
});

describe("order state machine", () => {
	it("allows the happy path and its compensations", () => {
		const path = ["CREATED", "PAYMENT_PENDING", "PAYMENT_SUCCESS", "CONFIRMED", "DISPATCHED", "COMPLETED"] as const;
		for (let i = 1; i < path.length; i++) expect(canTransition(path[i - 1], path[i])).toBe(true);
		expect(canTransition("CREATED", "FAILED")).toBe(true);
		expect(canTransition("PAYMENT_PENDING", "PAYMENT_FAILED")).toBe(true);
		expect(canTransition("PAYMENT_PENDING", "CANCELLED")).toBe(true);
		expect(canTransition("PAYMENT_SUCCESS", "FAILED")).toBe(true);
		expect(canTransition("CONFIRMED", "CANCELLED")).toBe(true);
	});
	it("refuses skipping steps, going back, and cancelling after dispatch", () => {
		expect(canTransition("CREATED", "CONFIRMED")).toBe(false);
		expect(canTransition("CONFIRMED", "PAYMENT_PENDING")).toBe(false);
		expect(canTransition("DISPATCHED", "CANCELLED")).toBe(false);
	});
	it("dates a transition now, or at the order's last change when a clock behind says earlier", () => {
		const last = new Date("2026-12-06T03:00:00.500Z");
		expect(transitionTime(new Date("2026-12-06T03:00:01Z"), last)).toEqual(new Date("2026-12-06T03:00:01Z"));
		expect(transitionTime(new Date("2026-12-06T03:00:00Z"), last)).toEqual(last);
		fc.assert(fc.property(fc.date({ noInvalidDate: true }), fc.date({ noInvalidDate: true }), (now, change) => transitionTime(now, change).getTime() === Math.max(now.getTime(), change.getTime())));
	});
	it("has no way out of a terminal state", () => {
		for (const s of ["COMPLETED", "FAILED", "PAYMENT_FAILED", "CANCELLED"] as const) {
			expect(isTerminal(s)).toBe(true);
			expect(ORDER_STATUSES.filter(to => canTransition(s, to))).toEqual([]);
		}
	});
});

describe("voucher rule", () => {
	it("tells from an order's event whether it may hold vouchers: an empty list means none, no list may", () => {
		expect(mayHoldVouchers([])).toBe(false);
		expect(mayHoldVouchers(["VCH-AAAA-BBBB-CCCC"])).toBe(true);
		expect(mayHoldVouchers(undefined)).toBe(true);
	});

	it("issues for strictly more than the threshold", () => {
		expect(qualifiesForVoucher(10000, 10000)).toBe(false);
		expect(qualifiesForVoucher(10001, 10000)).toBe(true);
	});
	it("makes codes of the documented shape from the CSPRNG", () => {
		const code = generateVoucherCode();
		expect(code).toMatch(/^VCH-[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}$/);
		expect(new Set(Array.from({ length: 1000 }, () => generateVoucherCode())).size).toBe(1000);
		expect(generateVoucherCode(() => 0)).toBe("VCH-AAAA-AAAA-AAAA");
	});
	it("expires after its TTL in days", () => {
		expect(voucherExpiry(new Date("2026-01-01T00:00:00Z"), 365).toISOString()).toBe("2027-01-01T00:00:00.000Z");
	});
});

describe("stock rules", () => {
	const levels = new Map([
		["a", { productId: "a", onHand: 10, reserved: 4, active: true }],
		["b", { productId: "b", onHand: 3, reserved: 0, active: true }],
		["off", { productId: "off", onHand: 9, reserved: 0, active: false }],
	]);
	it("reserves what is available exactly, and names every short line", () => {
		expect(findShortages([{ productId: "a", quantity: 6 }, { productId: "b", quantity: 3 }], levels)).toEqual([]);
		expect(
			findShortages(
				[
					{ productId: "a", quantity: 7 },
					{ productId: "b", quantity: 1 },
					{ productId: "nope", quantity: 1 },
					{ productId: "off", quantity: 1 },
				],
				levels,
			),
		).toEqual([
			{ productId: "a", requested: 7, available: 6 },
			{ productId: "nope", requested: 1, available: 0 },
			{ productId: "off", requested: 1, available: 0 },
		]);
	});
	it("merges a product named twice and sorts by product", () => {
		expect(mergeLines([{ productId: "b", quantity: 1 }, { productId: "a", quantity: 2 }, { productId: "b", quantity: 3 }])).toEqual([
			{ productId: "a", quantity: 2 },
			{ productId: "b", quantity: 4 },
		]);
	});
	it("allocates a batch of orders in arrival order, each all or nothing", () => {
		const { allocations, taken } = allocate(
			[
				{ orderId: "1", lines: [{ productId: "a", quantity: 4 }] },
				{ orderId: "2", lines: [{ productId: "a", quantity: 1 }, { productId: "b", quantity: 3 }] },
				{ orderId: "3", lines: [{ productId: "a", quantity: 2 }] }, // 1 left of a: short, takes nothing
				{ orderId: "4", lines: [{ productId: "a", quantity: 1 }] },
			],
			levels,
		);
		expect(allocations.map(a => a.shortages)).toEqual([[], [], [{ productId: "a", requested: 2, available: 1 }], []]);
		expect(taken).toEqual(new Map([["a", 6], ["b", 3]]));
		expect(levels.get("a")!.reserved).toBe(4); // the levels it was given are left alone
	});
	it("never allocates more than is available, and never part of an order (property)", () => {
		const product = fc.constantFrom("a", "b", "c");
		const order = fc.array(fc.record({ productId: product, quantity: fc.integer({ min: 1, max: 9 }) }), { minLength: 1, maxLength: 4 });
		const level = fc.record({ onHand: fc.integer({ min: 0, max: 30 }), reserved: fc.integer({ min: 0, max: 30 }) }).map(l => ({ ...l, reserved: Math.min(l.reserved, l.onHand) }));
		fc.assert(
			fc.property(fc.array(order, { maxLength: 20 }), fc.tuple(level, level, level), (orders, [la, lb, lc]) => {
				const start = new Map(["a", "b", "c"].map((id, i) => [id, { productId: id, active: true, ...[la, lb, lc][i] }]));
				const { allocations, taken } = allocate(orders.map((lines, i) => ({ orderId: String(i), lines })), start);
				for (const [id, level] of start) expect(taken.get(id) ?? 0).toBeLessThanOrEqual(level.onHand - level.reserved);
				const sum = new Map<string, number>();
				for (const a of allocations) if (a.shortages.length === 0) for (const l of a.lines) sum.set(l.productId, (sum.get(l.productId) ?? 0) + l.quantity);
				expect(sum).toEqual(taken);
			}),
		);
	});
});

describe("queueVerdict (watchdog: a backlog that moves)", () => {
	it("calls a backlog whose position advanced within the window moving", () => {
		const first = queueVerdict(undefined, { lag: 500, position: 10 }, 1000, 60000);
		expect(first.moving).toBe(true);
		const later = queueVerdict(first.progress, { lag: 400, position: 110 }, 50000, 60000);
		expect(later).toEqual({ moving: true, progress: { position: 110, movedAt: 50000 } });
	});
	it("calls a backlog that has not moved for the window stuck", () => {
		const seen = queueVerdict(undefined, { lag: 500, position: 10 }, 0, 60000);
		expect(queueVerdict(seen.progress, { lag: 500, position: 10 }, 59999, 60000).moving).toBe(true);
		expect(queueVerdict(seen.progress, { lag: 500, position: 10 }, 60000, 60000)).toEqual({ moving: false, progress: { position: 10, movedAt: 0 } });
	});
	it("sees no queue without lag", () => {
		expect(queueVerdict({ position: 5, movedAt: 0 }, { lag: 0, position: 9 }, 10, 60000).moving).toBe(false);
	});
});

describe("CircuitBreaker", () => {
	it("opens after the threshold, refuses while open, lets one trial through, closes on its success", () => {
		let t = 0;
		const cb = new CircuitBreaker(3, 1000, () => t);
		cb.failure();
		cb.failure();
		expect(cb.allow()).toBe(true);
		cb.failure();
		expect(cb.state).toBe("open");
		expect(cb.allow()).toBe(false);
		t = 1000;
		expect(cb.state).toBe("half-open");
		expect(cb.allow()).toBe(true);
		expect(cb.allow()).toBe(false); // one trial at a time
		cb.success();
		expect(cb.state).toBe("closed");
		expect(cb.allow()).toBe(true);
	});
	it("opens again at once when the trial fails", () => {
		let t = 0;
		const cb = new CircuitBreaker(1, 500, () => t);
		cb.failure();
		t = 500;
		expect(cb.allow()).toBe(true);
		cb.failure();
		expect(cb.state).toBe("open");
	});
	it("counts failures in a row only", () => {
		const cb = new CircuitBreaker(2, 1000, () => 0);
		cb.failure();
		cb.success();
		cb.failure();
		expect(cb.state).toBe("closed");
	});
});

describe("the order's saga decisions (lib/domain/saga)", () => {
	const order = (status: OrderState["status"], paymentStatus: OrderState["paymentStatus"] = "PENDING", paysAtOnce = true): OrderState => ({
		status,
		paymentStatus,
		paysAtOnce,
		paymentMethod: paysAtOnce ? "WALLET" : null,
		sessionId: null,
		total: 1000,
	});
	const hosted = (status: OrderState["status"], sessionId = "cs_1", paymentStatus: OrderState["paymentStatus"] = "PENDING"): OrderState => ({ ...order(status, paymentStatus, false), paymentMethod: "HOSTED_CARD", sessionId });
	it("follows the happy path: reserved → pay, paid → PAYMENT_SUCCESS, committed → CONFIRMED", () => {
		expect(decide(order("CREATED"), { kind: "reserved", expiresAt: "2026-12-02T00:00:00Z" })).toEqual({ to: "PAYMENT_PENDING", followUp: { kind: "startPayment" } });
		expect(decide(order("CREATED", "NOT_STARTED", false), { kind: "reserved", expiresAt: "X" })).toEqual({ to: "PAYMENT_PENDING", deadline: { after: "X" } });
		expect(decide(order("PAYMENT_PENDING"), { kind: "paid", paymentId: "p" })).toMatchObject({ to: "PAYMENT_SUCCESS", set: { payment_status: "AUTHORIZED", payment_id: "p", card_token: null } });
		expect(decide(order("PAYMENT_SUCCESS", "AUTHORIZED"), { kind: "committed" })).toEqual({ to: "CONFIRMED" });
	});
	it("compensates: out of stock fails, a failed payment fails, an expired reservation cancels or refunds", () => {
		expect(decide(order("CREATED"), { kind: "outOfStock", lines: [] })).toMatchObject({ to: "FAILED", reason: "OUT_OF_STOCK" });
		expect(decide(order("PAYMENT_PENDING"), { kind: "paymentFailed", code: "INSUFFICIENT_FUNDS", reason: "r" })).toMatchObject({ to: "PAYMENT_FAILED", reason: "INSUFFICIENT_FUNDS" });
		expect(decide(order("PAYMENT_PENDING", "NOT_STARTED", false), { kind: "reservationGone" })).toEqual({ to: "CANCELLED", reason: "RESERVATION_EXPIRED" });
		expect(decide(order("PAYMENT_SUCCESS", "AUTHORIZED"), { kind: "reservationGone" })).toMatchObject({ to: "FAILED", set: { payment_status: "REFUND_PENDING" }, followUp: { kind: "refund", reason: "RESERVATION_EXPIRED" } });
	});
	it("ignores a fact that comes late or twice, and refunds a payment that arrives after the order ended", () => {
		expect(decide(order("FAILED"), { kind: "reserved", expiresAt: "X" })).toBeUndefined();
		expect(decide(order("CONFIRMED", "AUTHORIZED"), { kind: "committed" })).toBeUndefined();
		expect(decide(order("PAYMENT_SUCCESS", "AUTHORIZED"), { kind: "paid", paymentId: "p" })).toBeUndefined();
		expect(decide(order("CANCELLED", "NOT_STARTED"), { kind: "paid", paymentId: "p" })).toEqual({ set: { payment_status: "REFUND_PENDING", payment_id: "p" }, deadline: "step", followUp: { kind: "refund", reason: "ORDER_NOT_PAYABLE" } });
		expect(decide(order("CANCELLED", "REFUND_PENDING"), { kind: "paid", paymentId: "p" })).toBeUndefined();
	});
	it("gives up after the watchdog's last try (refunding a paid order), and cancels with a refund when paid", () => {
		expect(giveUp(order("PAYMENT_SUCCESS", "AUTHORIZED"))).toMatchObject({ to: "FAILED", reason: "SAGA_TIMEOUT", set: { payment_status: "REFUND_PENDING" }, followUp: { kind: "refund" } });
		expect(giveUp(order("CREATED"))?.followUp).toBeUndefined();
		expect(giveUp(order("CONFIRMED", "AUTHORIZED"))).toBeUndefined();
		expect(cancel(order("CONFIRMED", "AUTHORIZED"), "R")).toMatchObject({ to: "CANCELLED", reason: "R", followUp: { kind: "refund", reason: "CANCELLED" } });
	});
	it("sets the deadline a step away while the saga has a step to take, and none after", () => {
		expect(deadlineOf({ to: "PAYMENT_PENDING" }, "PAYMENT_PENDING", "PENDING")).toBe("step");
		expect(deadlineOf({ to: "CONFIRMED" }, "CONFIRMED", "AUTHORIZED")).toBe("none");
		expect(deadlineOf({ to: "FAILED" }, "FAILED", "REFUND_PENDING")).toBe("step");
		expect(deadlineOf({ set: { payment_status: "REFUNDED" } }, "FAILED", "REFUNDED")).toBeUndefined();
		expect(allowed("CONFIRMED", { to: "PAYMENT_PENDING" })).toBe(false);
	});
	it("maps every event the order consumes to a fact", () => {
		expect(factsOf({ eventName: "stock.released", data: { orderId: "o", reason: "EXPIRED" } })).toEqual([{ kind: "reservationGone" }]);
		expect(factsOf({ eventName: "stock.released", data: { orderId: "o", reason: "PAYMENT_FAILED" } })).toEqual([]);
		const refund = { orderId: "o", userId: "u", paymentId: "p", amount: 1, currency: "EUR", reason: null };
		expect(factsOf({ eventName: "payment.refund_failed", data: refund })).toEqual([{ kind: "refundEnded", status: "REFUND_FAILED" }]);
		expect(factsOf({ eventName: "payment.session_expired", data: { orderId: "o", userId: "u", sessionId: "cs_9" } })).toEqual([{ kind: "sessionExpired", sessionId: "cs_9" }]);
		expect(Object.keys(EVENT_FACTS).sort()).toEqual(["payment.authorized", "payment.failed", "payment.refund_failed", "payment.refunded", "payment.session_expired", "stock.committed", "stock.failed", "stock.released", "stock.reserved"]);
	});
	it("confirms an order whose stock commit arrives before its payment's answer (the commit brings the payment), and changes nothing when it comes in turn", () => {
		const facts = factsOf({ eventName: "stock.committed", data: { orderId: "o", items: [], paymentId: "p" } });
		expect(facts).toEqual([{ kind: "paid", paymentId: "p" }, { kind: "committed" }]);
		// Early: still PAYMENT_PENDING, the two facts in turn take it to PAYMENT_SUCCESS, then CONFIRMED.
		const paid = decide(order("PAYMENT_PENDING"), facts[0])!;
		expect(paid).toMatchObject({ to: "PAYMENT_SUCCESS", set: { payment_id: "p" } });
		expect(decide(order(paid.to!, "AUTHORIZED"), facts[1])).toEqual({ to: "CONFIRMED" });
		// The payment's answer after that: nothing more.
		expect(decide(order("CONFIRMED", "AUTHORIZED"), { kind: "paid", paymentId: "p" })).toBeUndefined();
		// In turn: the order is PAYMENT_SUCCESS already, the payment fact is ignored and the commit confirms.
		expect(decide(order("PAYMENT_SUCCESS", "AUTHORIZED"), facts[0])).toBeUndefined();
		// Asked for by the order (the watchdog), it carries no payment.
		expect(factsOf({ eventName: "stock.committed", data: { orderId: "o", items: [] } })).toEqual([{ kind: "committed" }]);
	});
	it("opens a hosted session only for an unpaid PAYMENT_PENDING order with something to pay (its own open session answered again)", () => {
		expect(hostedPaymentRefusal(order("PAYMENT_PENDING", "NOT_STARTED", false))).toBeUndefined();
		expect(hostedPaymentRefusal(hosted("PAYMENT_PENDING"))).toBeUndefined();
		expect(hostedPaymentRefusal(order("PAYMENT_PENDING", "PENDING"))).toMatch(/under way/);
		expect(hostedPaymentRefusal(order("CONFIRMED", "AUTHORIZED"))).toMatch(/CONFIRMED/);
		expect(hostedPaymentRefusal({ ...order("PAYMENT_PENDING", "NOT_STARTED", false), total: 0 })).toMatch(/Nothing/);
		expect(sessionOpened("cs_2")).toEqual({ set: { payment_method: "HOSTED_CARD", payment_status: "PENDING", payment_session_id: "cs_2" } });
	});
	it("lets an expired session's order wait for another, unless a newer session is open; voids an open session when the order ends", () => {
		expect(decide(hosted("PAYMENT_PENDING"), { kind: "sessionExpired", sessionId: "cs_1" })).toEqual({
			set: { payment_status: "NOT_STARTED", payment_method: null, payment_session_id: null, payment_failure_reason: "The payment session expired" },
		});
		expect(decide(hosted("PAYMENT_PENDING", "cs_2"), { kind: "sessionExpired", sessionId: "cs_1" })).toBeUndefined();
		expect(decide(hosted("CANCELLED"), { kind: "sessionExpired", sessionId: "cs_1" })).toBeUndefined();
		expect(decide(hosted("PAYMENT_PENDING"), { kind: "paid", paymentId: "p" })).toMatchObject({ to: "PAYMENT_SUCCESS", set: { payment_status: "AUTHORIZED" } });
		expect(cancel(hosted("PAYMENT_PENDING"), "R")).toEqual({ to: "CANCELLED", reason: "R", followUp: { kind: "voidSession" } });
		expect(decide(hosted("PAYMENT_PENDING"), { kind: "reservationGone" })).toEqual({ to: "CANCELLED", reason: "RESERVATION_EXPIRED", followUp: { kind: "voidSession" } });
		expect(giveUp(hosted("PAYMENT_PENDING"))?.followUp).toEqual({ kind: "voidSession" });
		expect(cancel(order("PAYMENT_PENDING", "NOT_STARTED", false), "R").followUp).toBeUndefined();
	});
});

describe("hosted payment redirects (lib/domain/redirect)", () => {
	const allowed = ["https://shop.example.com", "http://localhost:3000"];
	it("accepts the shop's own origins, with the {SESSION_ID} placeholder", () => {
		expect(redirectProblem("https://shop.example.com/paid?session={SESSION_ID}", allowed)).toBeUndefined();
		expect(redirectProblem("http://localhost:3000/", allowed)).toBeUndefined();
	});
	it("refuses any other origin, scheme, credentials or non-URL: never an open redirect", () => {
		for (const url of ["https://evil.example.com/", "https://shop.example.com.evil.com/", "http://shop.example.com/", "javascript:alert(1)", "//evil.example.com", "https://user:pw@shop.example.com/", "not a url", "https://localhost:3000/"]) {
			expect(redirectProblem(url, allowed)).toEqual(expect.any(String));
		}
		expect(redirectProblem("https://shop.example.com/", [])).toMatch(/allowed origin/);
	});
});

describe("wallet debits (lib/domain/wallet)", () => {
	it("takes debits in arrival order, equal to the balance included, and refuses one that does not fit without changing anything", () => {
		const { after, changed } = applyDebits(
			new Map([
				["ann", 500],
				["bob", 100],
			]),
			[
				{ userId: "ann", amount: 200 },
				{ userId: "bob", amount: 101 }, // refused
				{ userId: "ann", amount: 300 }, // exactly the rest
				{ userId: "ann", amount: 1 }, // refused: nothing left
				{ userId: "cat", amount: 1 }, // no wallet: nothing to take
				{ userId: "bob", amount: 100 },
			],
		);
		expect(after).toEqual([300, undefined, 0, undefined, undefined, 0]);
		expect(changed).toEqual(new Map([["ann", 0], ["bob", 0]]));
	});
	it("never takes a balance below zero and takes exactly what it accepts (property)", () => {
		fc.assert(
			fc.property(fc.array(fc.record({ userId: fc.constantFrom("a", "b"), amount: fc.integer({ min: 1, max: 50 }) })), fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 200 }), (debits, a, b) => {
				const start = new Map([["a", a], ["b", b]]);
				const { after, changed } = applyDebits(start, debits);
				for (const [user, balance] of start) {
					const taken = debits.reduce((sum, d, i) => sum + (d.userId === user && after[i] !== undefined ? d.amount : 0), 0);
					expect(changed.get(user) ?? balance).toBe(balance - taken);
					expect(balance - taken).toBeGreaterThanOrEqual(0);
				}
			}),
		);
	});
});
