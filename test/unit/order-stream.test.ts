import { streamMove, type OrderView, type StatusStep } from "../../lib/api/order-view";

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
