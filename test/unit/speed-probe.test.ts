import { speedOf, startSpeedProbe } from "../../scripts/speed-probe";

describe("the benchmark's speed probe", () => {
	it("times its unit of work by CPU time on its own thread, once an interval, until stopped", async () => {
		const probe = startSpeedProbe(20, 4);
		await new Promise(r => setTimeout(r, 600));
		const samples = await probe.stop();
		expect(samples.length).toBeGreaterThanOrEqual(3);
		for (const ms of samples) expect(ms).toBeGreaterThan(0);
		const count = samples.length;
		await new Promise(r => setTimeout(r, 150));
		expect(samples.length).toBe(count); // stopped: no sample after stop()
	});

	it("sums a run's samples up as their median and spread", () => {
		expect(speedOf([])).toBeUndefined();
		expect(speedOf([3, 1, 2, 9])).toEqual({ p50: 3, min: 1, max: 9, samples: 4 });
	});
});
