import { CacheVersions } from "../../lib/cache-versions";

describe("CacheVersions", () => {
	it("gives changed records, and whole-collection reads, a new version; the others keep theirs", () => {
		const v = new CacheVersions();
		const [a, b, ab, all] = [v.of(["a"]), v.of(["b"]), v.of(["a", "b"]), v.ofAll()];
		v.changed(["a"]);
		expect(v.of(["a"])).not.toBe(a);
		expect(v.of(["a", "b"])).not.toBe(ab);
		expect(v.ofAll()).not.toBe(all);
		expect(v.of(["b"])).toBe(b);
	});

	it("never names a version again once its record changed, however often it changes", () => {
		const v = new CacheVersions();
		const seen = new Set([v.of(["a"])]);
		for (let i = 0; i < 50; i++) {
			v.changed(["a", "b"]);
			expect(seen.has(v.of(["a"]))).toBe(false);
			seen.add(v.of(["a"]));
		}
	});

	it("is this node's own: another node's versions never name the same entries", () => {
		const [one, two] = [new CacheVersions(), new CacheVersions()];
		expect(one.of(["a"])).not.toBe(two.of(["a"]));
		expect(one.ofAll()).not.toBe(two.ofAll());
	});

	it("retires every version when told only that something changed (a hint that names no records)", () => {
		const v = new CacheVersions();
		const seen = new Set([v.of(["a"]), v.of(["b"]), v.ofAll()]);
		v.changed(["a"]);
		seen.add(v.of(["a"]));
		v.changed();
		for (const version of [v.of(["a"]), v.of(["b"]), v.ofAll()]) expect(seen.has(version)).toBe(false);
	});
});
