import { packageOf, summarizeProfile, type CpuProfile } from "../../scripts/cpu-profile";

describe("packageOf", () => {
	it("names node_modules packages, scoped ones included, project files, node's modules and V8's entries", () => {
		expect(packageOf("file:///w/node_modules/pg/lib/result.js", "parseRow")).toBe("pg");
		expect(packageOf("/w/node_modules/@electric-sql/pglite/dist/index.cjs", "x")).toBe("@electric-sql/pglite");
		expect(packageOf("/w/node_modules/a/node_modules/b/x.js", "f")).toBe("a");
		expect(packageOf("file:///work/main/services/order.service.ts", "transition")).toBe("project:services/order.service.ts");
		expect(packageOf("node:internal/streams/writable", "write")).toBe("node:streams");
		expect(packageOf("node:net", "write")).toBe("node:net");
		expect(packageOf("wasm://wasm/022aac12", "wasm-function[1]")).toBe("wasm (PGlite's PostgreSQL)");
		expect(packageOf("", "(garbage collector)")).toBe("(garbage collector)");
		expect(packageOf("", "writeBuffer")).toBe("(native)");
	});
});

describe("summarizeProfile", () => {
	const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 9 });
	const profile: CpuProfile = {
		nodes: [
			{ id: 1, callFrame: frame("(root)", ""), children: [2, 3] },
			{ id: 2, callFrame: frame("query", "/w/node_modules/sequelize/lib/sequelize.js"), children: [4] },
			{ id: 3, callFrame: frame("(garbage collector)", "") },
			{ id: 4, callFrame: frame("parse", "/w/node_modules/pg/lib/result.js") },
		],
		startTime: 0,
		endTime: 10_000,
		// Samples at 1000, 2000, … µs: the first two fall before the window.
		samples: [2, 2, 4, 4, 4, 3, 2, 4, 4, 3],
		timeDeltas: Array(10).fill(1000),
	};

	it("charges each sample's time to the function it was in, by package and by function, inside the window", () => {
		const s = summarizeProfile(profile, 2500, 11_000);
		expect(s.seconds).toBe(0);
		expect(s.byPackage).toEqual([
			{ name: "pg", percent: 62.5 },
			{ name: "(garbage collector)", percent: 25 },
			{ name: "sequelize", percent: 12.5 },
		]);
		expect(s.byFunction.slice(0, 2)).toEqual([
			{ name: "parse (pg:10)", percent: 62.5 },
			{ name: "(garbage collector)", percent: 25 },
		]);
	});

	it("counts every sample without a window, and keeps the n most costly", () => {
		const s = summarizeProfile(profile, 0, Infinity, 1);
		expect(s.byPackage).toEqual([{ name: "pg", percent: 50 }]);
	});
});
