import { aggregateKey, createEnvelope, isDomainEvent } from "../../lib/events/envelope";
import { backoffDelay } from "../../lib/events/backoff";
import { BatchQueue, GroupCommit, applyBisecting } from "../../lib/batch";
import { verdictOf } from "../../lib/sweep";
import { OffsetCommits, type PartitionOffset } from "../../lib/events/offset-commits";

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

describe("BatchQueue", () => {
	/** One turn of the event loop: what was pushed in it has started as a batch. */
	const nextTurn = () => new Promise<void>(resolve => setImmediate(resolve));

	it("handles what arrives in one turn together when idle, and what arrives meanwhile as the next batch, in order", async () => {
		const batches: number[][] = [];
		let release!: () => void;
		const queue = new BatchQueue<number>(async items => {
			batches.push(items);
			if (batches.length === 1) await new Promise<void>(r => (release = r));
		}, 3);
		const first = [queue.push([1]), queue.push([2])];
		expect(batches).toEqual([]); // joined by the rest of the turn
		await nextTurn();
		expect(batches).toEqual([[1, 2]]); // no wait beyond the turn
		const rest = [queue.push([3]), queue.push([4, 5]), queue.push([6])];
		expect(queue.depth).toBe(4);
		release();
		await Promise.all([...first, ...rest]);
		expect(batches).toEqual([[1, 2], [3, 4, 5], [6]]); // at most 3 a batch, arrival order kept
	});

	it("paced: what follows a batch within the interval waits for it, unless the batch is full; idle events go at once", async () => {
		jest.useFakeTimers({ doNotFake: ["setImmediate"] });
		try {
			const batches: number[][] = [];
			const queue = new BatchQueue<number>(async items => void batches.push(items), 3, 1000);
			await queue.push([1]); // idle: no wait, no timer advanced
			const paced = [queue.push([2]), queue.push([3])];
			await jest.advanceTimersByTimeAsync(999);
			expect(batches).toEqual([[1]]);
			await jest.advanceTimersByTimeAsync(1);
			await Promise.all(paced);
			expect(batches).toEqual([[1], [2, 3]]);
			await Promise.all([queue.push([4]), queue.push([5]), queue.push([6])]); // full: goes without the timer
			expect(batches).toEqual([[1], [2, 3], [4, 5, 6]]);
			await jest.advanceTimersByTimeAsync(5000);
			await queue.push([7]); // after a quiet interval: at once
			expect(batches).toEqual([[1], [2, 3], [4, 5, 6], [7]]);
		} finally {
			jest.useRealTimers();
		}
	});

	it("fails the items of a failing batch, and goes on with the next", async () => {
		const queue = new BatchQueue<string>(async items => {
			if (items.includes("bad")) throw new Error("boom");
		}, 10);
		const bad = queue.push(["bad"]);
		await nextTurn();
		const results = await Promise.allSettled([bad, queue.push(["ok"])]);
		expect(results.map(r => r.status)).toEqual(["rejected", "fulfilled"]);
	});
});

describe("OffsetCommits", () => {
	const at = (partition: number, offset: number): PartitionOffset => ({ topic: "t", partition, offset: String(offset) });

	it("commits at most once per interval, the latest offset of each partition in one request, the rest by a timer", async () => {
		jest.useFakeTimers();
		try {
			const commits: PartitionOffset[][] = [];
			const errors: Error[] = [];
			const offsets = new OffsetCommits(async list => void commits.push(list), 100, err => errors.push(err));
			await offsets.add(at(0, 1)); // the first: at once
			expect(commits).toEqual([[at(0, 1)]]);
			await offsets.add(at(0, 2));
			await offsets.add(at(1, 7));
			await offsets.add(at(0, 3));
			await jest.advanceTimersByTimeAsync(99);
			expect(commits).toHaveLength(1); // held
			await jest.advanceTimersByTimeAsync(1);
			expect(commits).toEqual([[at(0, 1)], [at(0, 3), at(1, 7)]]);
			await jest.advanceTimersByTimeAsync(1000);
			await offsets.add(at(1, 8)); // after a quiet interval: at once
			expect(commits).toHaveLength(3);
			expect(errors).toEqual([]);
		} finally {
			jest.useRealTimers();
		}
	});

	it("commits every offset at once with no interval, and after close", async () => {
		const commits: PartitionOffset[][] = [];
		const unpaced = new OffsetCommits(async list => void commits.push(list), 0, () => undefined);
		await unpaced.add(at(0, 1));
		await unpaced.add(at(0, 2));
		expect(commits).toEqual([[at(0, 1)], [at(0, 2)]]);
		commits.length = 0;
		const paced = new OffsetCommits(async list => void commits.push(list), 60_000, () => undefined);
		await paced.add(at(0, 1));
		await paced.add(at(0, 2)); // held for a minute…
		expect(commits).toEqual([[at(0, 1)]]);
		await paced.close(); // …until the consumer leaves
		await paced.add(at(0, 3)); // a chunk that finishes while it leaves
		expect(commits).toEqual([[at(0, 1)], [at(0, 2)], [at(0, 3)]]);
	});

	it("reports a commit the timer started that failed, and commits later offsets again", async () => {
		jest.useFakeTimers();
		try {
			const errors: string[] = [];
			const sent: PartitionOffset[][] = [];
			let fail = true;
			const offsets = new OffsetCommits(
				async list => {
					sent.push(list);
					if (fail && sent.length === 2) throw new Error("rebalancing");
				},
				100,
				err => errors.push(err.message),
			);
			await offsets.add(at(0, 1));
			await offsets.add(at(0, 2));
			await jest.advanceTimersByTimeAsync(100);
			expect(errors).toEqual(["rebalancing"]);
			fail = false;
			await jest.advanceTimersByTimeAsync(100);
			await offsets.add(at(0, 3));
			expect(sent).toEqual([[at(0, 1)], [at(0, 2)], [at(0, 3)]]);
		} finally {
			jest.useRealTimers();
		}
	});
});

describe("GroupCommit", () => {
	it("writes what arrives meanwhile as one group, answers each caller its own result, and fails only the bad item", async () => {
		const writes: string[][] = [];
		let release!: () => void;
		const group = new GroupCommit<string, string>(async items => {
			writes.push(items);
			if (writes.length === 1) await new Promise<void>(r => (release = r));
			if (items.includes("crash")) throw new Error("constraint"); // fails the whole write
			return items.map(i => (i === "refused" ? new Error("refused alone") : i.toUpperCase()));
		}, 10);
		const first = group.submit("a");
		await new Promise<void>(resolve => setImmediate(resolve)); // "a" is being written
		const rest = ["b", "refused", "crash", "c"].map(i => group.submit(i));
		release();
		const results = await Promise.allSettled([first, ...rest]);
		expect(results.map(r => (r.status === "fulfilled" ? r.value : (r.reason as Error).message))).toEqual(["A", "B", "refused alone", "constraint", "C"]);
		expect(writes[1]).toEqual(["b", "refused", "crash", "c"]); // one group, then split around the crash
	});
});

describe("applyBisecting", () => {
	it("applies a clean batch once, as one unit", async () => {
		const applied: number[][] = [];
		await applyBisecting([1, 2, 3], async items => void applied.push(items), async () => {
			throw new Error("no single delivery for a clean batch");
		});
		expect(applied).toEqual([[1, 2, 3]]);
	});

	it("isolates a poison item: the others are applied in order, the poison goes alone to the single path", async () => {
		const applied: number[] = [];
		const singles: number[] = [];
		const apply = async (items: number[]) => {
			if (items.includes(3)) throw new Error("poison");
			applied.push(...items);
		};
		await applyBisecting([1, 2, 3, 4, 5, 6], apply, async item => {
			singles.push(item);
			if (item !== 3) applied.push(item);
		});
		expect(singles).toEqual([3]);
		expect(applied).toEqual([1, 2, 4, 5, 6]); // nothing twice, nothing reordered
	});
});

describe("sweep verdicts (lib/sweep)", () => {
	const retry = { baseMs: 100, maxMs: 1000 };
	it("settles on success, retries with backoff until the last try, then gives up", () => {
		expect(verdictOf(true, 5, 5, retry, 0)).toEqual({ kind: "done" });
		expect(verdictOf(false, 1, 5, retry, 0)).toEqual({ kind: "retry", next: new Date(100) });
		expect(verdictOf(false, 3, 5, retry, 0)).toEqual({ kind: "retry", next: new Date(400) });
		expect(verdictOf(false, 4, 5, retry, 0)).toEqual({ kind: "retry", next: new Date(800) });
		expect(verdictOf(false, 5, 5, retry, 0)).toEqual({ kind: "gaveUp" });
	});
});
