import { newId, shortId } from "../../lib/ids";
import { createEnvelope, isDomainEvent } from "../../lib/events/envelope";
import { UUID_V7 } from "../helpers/ids";

describe("newId", () => {
	it("makes UUIDs v7, which sort in the order they were made (an index grows at its right edge)", async () => {
		const ids: string[] = [];
		for (let i = 0; i < 2000; i++) {
			ids.push(newId());
			if (i % 500 === 0) await new Promise(r => setTimeout(r, 2)); // across milliseconds too
		}
		for (const id of ids) expect(id).toMatch(UUID_V7);
		expect(new Set(ids).size).toBe(ids.length);
		expect([...ids].sort()).toEqual(ids);
	});

	it("is what a domain event's ID is made of", () => {
		const event = createEnvelope("order.created", { orderId: newId() }, { service: "order", nodeID: "n1" });
		expect(event.eventId).toMatch(UUID_V7);
		expect(isDomainEvent(event)).toBe(true);
	});
});

describe("shortId", () => {
	it("is an ID's last 8 characters, which differ between orders made in the same millisecond", () => {
		const ids = Array.from({ length: 200 }, newId);
		expect(shortId(ids[0])).toBe(ids[0].slice(-8));
		expect(new Set(ids.map(id => id.slice(0, 8))).size).toBeLessThan(5); // the time: shared
		expect(new Set(ids.map(shortId)).size).toBe(200);
	});
});
