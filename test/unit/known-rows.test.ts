import { KnownRows } from "../../lib/known-rows";
import type { Transaction } from "../../lib/transactions";

type Row = { id: string; v: number };

/** A transaction that only collects what runs once it commits. */
function committing() {
	const after: Array<() => unknown> = [];
	return { tx: { afterCommit: (fn: () => unknown) => after.push(fn) } as unknown as Transaction, commit: () => after.forEach(fn => fn()) };
}

describe("KnownRows", () => {
	const rows = () => new KnownRows<Row>(r => r.id, 10, 60_000);

	it("keeps a transaction's rows only once it has committed", () => {
		const known = rows();
		const { tx, commit } = committing();
		known.remember([{ id: "a", v: 1 }], tx);
		expect(known.take(["a"])).toBeUndefined();
		known.remember([{ id: "a", v: 1 }], tx);
		commit();
		expect(known.take(["a"])).toEqual([{ id: "a", v: 1 }]);
	});

	it("hands the rows of all keys in key order, once, and none when one is missing", () => {
		const known = rows();
		const { tx, commit } = committing();
		known.remember([{ id: "c", v: 3 }, { id: "a", v: 1 }, { id: "b", v: 2 }], tx);
		commit();
		expect(known.take(["c", "a", "c"])).toEqual([{ id: "a", v: 1 }, { id: "c", v: 3 }]);
		expect(known.take(["a"])).toBeUndefined(); // taken: a retry reads
		expect(known.take(["b", "x"])).toBeUndefined();
		expect(known.take(["b"])).toBeUndefined(); // taken with the miss
	});

	it("forgets rows written elsewhere", () => {
		const known = rows();
		const { tx, commit } = committing();
		known.remember([{ id: "a", v: 1 }, { id: "b", v: 1 }], tx);
		commit();
		known.forget(["a"]);
		expect(known.take(["a"])).toBeUndefined();
		expect(known.take(["b"])).toEqual([{ id: "b", v: 1 }]);
	});
});
