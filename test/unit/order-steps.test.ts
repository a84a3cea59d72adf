import { addSteps, stepsLine, type StepTimes } from "../../scripts/order-steps";

const history = (start: number, ...steps: Array<[string, number]>) => steps.map(([status, ms]) => ({ status, at: new Date(start + ms).toISOString() }));

describe("a confirmed order's steps (the benchmark's stepsMs)", () => {
	it("times the POST to CREATED, each status to the next up to CONFIRMED, and CONFIRMED to the customer", () => {
		const steps: StepTimes = {};
		const t0 = Date.parse("2026-12-06T03:00:00.000Z");
		const h = history(t0, ["CREATED", 14], ["PAYMENT_PENDING", 80], ["PAYMENT_SUCCESS", 170], ["CONFIRMED", 200], ["DISPATCHED", 5000]);
		addSteps(steps, t0, h, t0 + 212);
		addSteps(steps, t0, h);
		expect(steps).toEqual({
			"POST → CREATED": [14, 14],
			"CREATED → PAYMENT_PENDING": [66, 66],
			"PAYMENT_PENDING → PAYMENT_SUCCESS": [90, 90],
			"PAYMENT_SUCCESS → CONFIRMED": [30, 30],
			"CONFIRMED → customer": [12],
		});
	});

	it("lists a run's steps in the order they happen", () => {
		expect(stepsLine({ "POST → CREATED": { p50: 14, p95: 30 }, "CREATED → PAYMENT_PENDING": { p50: 66, p95: 100 } })).toBe("POST → CREATED 14/30, CREATED → PAYMENT_PENDING 66/100");
		expect(stepsLine(undefined)).toBe("none");
	});
});
