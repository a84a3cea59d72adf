import { LocalLocker, LockTimeoutError, normalizeKeys, withLease } from "../../lib/locks";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

describe("normalizeKeys", () => {
	it("sorts and deduplicates so every holder takes keys in one order", () => {
		expect(normalizeKeys(["product:b", "product:a", "product:b"])).toEqual(["product:a", "product:b"]);
	});
	it("refuses an empty key list", () => {
		expect(() => normalizeKeys([])).toThrow(/at least one key/);
	});
});

describe("LocalLocker", () => {
	it("never lets two holders of one key overlap", async () => {
		const locker = new LocalLocker();
		let inside = 0;
		let maxInside = 0;
		const order: number[] = [];
		await Promise.all(
			Array.from({ length: 20 }, (_, i) =>
				withLease(locker, ["k"], 1000, 5000, async () => {
					inside++;
					maxInside = Math.max(maxInside, inside);
					await sleep(2);
					order.push(i);
					inside--;
				}),
			),
		);
		expect(maxInside).toBe(1);
		expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i)); // FIFO
	});

	it("does not deadlock on overlapping key sets given in opposite orders", async () => {
		const locker = new LocalLocker();
		const runs = Array.from({ length: 30 }, (_, i) =>
			withLease(locker, i % 2 ? ["a", "b"] : ["b", "a"], 1000, 5000, async () => {
				await sleep(1);
				return i;
			}),
		);
		expect((await Promise.all(runs)).length).toBe(30);
	});

	it("lets holders of different keys run together", async () => {
		const locker = new LocalLocker();
		let inside = 0;
		let maxInside = 0;
		await Promise.all(
			["a", "b", "c"].map(k =>
				withLease(locker, [k], 1000, 5000, async () => {
					inside++;
					maxInside = Math.max(maxInside, inside);
					await sleep(20);
					inside--;
				}),
			),
		);
		expect(maxInside).toBe(3);
	});

	it("fails with LOCK_TIMEOUT when the keys cannot be had in time, and the queue goes on", async () => {
		const locker = new LocalLocker();
		const holder = withLease(locker, ["k"], 1000, 1000, () => sleep(200));
		const waiter = withLease(locker, ["k"], 1000, 30, async () => "never");
		await expect(waiter).rejects.toBeInstanceOf(LockTimeoutError);
		await expect(waiter).rejects.toMatchObject({ code: 503, type: "LOCK_TIMEOUT", retryable: true });
		await holder;
		await expect(withLease(locker, ["k"], 1000, 100, async () => "next")).resolves.toBe("next");
	});

	it("releases the lock when the work throws", async () => {
		const locker = new LocalLocker();
		await expect(withLease(locker, ["k"], 1000, 100, async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
		await expect(withLease(locker, ["k"], 1000, 100, async () => "free")).resolves.toBe("free");
	});
});
