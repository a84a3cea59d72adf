import { partitionLag } from "../../lib/runtime";

describe("partitionLag", () => {
	const end = { partition: 1, low: "4", high: "10" };
	it("counts from the group's committed offset to the end", () => {
		expect(partitionLag([{ topic: "t", partitions: [{ partition: 1, offset: "7" }] }], "t", end)).toEqual({ from: 7, lag: 3 });
	});
	it("counts from the partition's beginning when the group committed nothing there (-1, or no entry)", () => {
		expect(partitionLag([{ topic: "t", partitions: [{ partition: 1, offset: "-1" }] }], "t", end)).toEqual({ from: 4, lag: 6 });
		expect(partitionLag([{ topic: "other", partitions: [{ partition: 1, offset: "9" }] }], "t", end)).toEqual({ from: 4, lag: 6 });
	});
	it("never counts below zero (a commit past the end after the topic was trimmed)", () => {
		expect(partitionLag([{ topic: "t", partitions: [{ partition: 1, offset: "12" }] }], "t", end)).toEqual({ from: 12, lag: 0 });
	});
});
