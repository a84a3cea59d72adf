import { aggregateKey, createEnvelope, isDomainEvent } from "../../lib/events/envelope";
import { backoffDelay } from "../../lib/events/backoff";

const producer = { service: "order", nodeID: "n1" };

describe("domain event envelope", () => {
	it("carries the fields of SPEC section 7", () => {
		const e = createEnvelope("order.created", { orderId: "o-1", total: 100 }, producer);
		expect(e).toMatchObject({ eventName: "order.created", version: 1, correlationId: "o-1", causationId: null, producer, data: { orderId: "o-1" } });
		expect(isDomainEvent(e)).toBe(true);
		expect(new Date(e.occurredAt).toISOString()).toBe(e.occurredAt);
	});

	it("links a caused event to its cause and keeps the correlation", () => {
		const cause = createEnvelope("order.created", { orderId: "o-1" }, producer);
		const e = createEnvelope("stock.reserved", { orderId: "o-1" }, { service: "inventory", nodeID: "n2" }, { causedBy: cause });
		expect(e.causationId).toBe(cause.eventId);
		expect(e.correlationId).toBe("o-1");
		expect(e.eventId).not.toBe(cause.eventId);
	});

	it("keys an event by its aggregate", () => {
		expect(aggregateKey(createEnvelope("x", { orderId: "o", productId: "p" }, producer))).toBe("o");
		expect(aggregateKey(createEnvelope("x", { productId: "p" }, producer))).toBe("p");
		expect(aggregateKey(createEnvelope("x", { userId: "u" }, producer))).toBe("u");
		expect(aggregateKey(createEnvelope("x", { orderId: "o" }, producer), "explicit")).toBe("explicit");
		const bare = createEnvelope("x", {}, producer);
		expect(aggregateKey(bare)).toBe(bare.eventId);
	});

	it.each([null, "text", {}, { eventId: "not-a-uuid", eventName: "x", version: 1, occurredAt: "", producer: {}, data: {} }])(
		"rejects %j as a domain event",
		value => expect(isDomainEvent(value)).toBe(false),
	);
});

describe("backoffDelay", () => {
	it("doubles from the base and stops at the ceiling", () => {
		expect([0, 1, 2, 3, 4].map(n => backoffDelay(n, 100, 500))).toEqual([0, 100, 200, 400, 500]);
	});
});
