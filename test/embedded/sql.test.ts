/**
 * The hot path's SQL (lib/sql.ts): named replacements written as literals, checked against
 * PostgreSQL's own parser (PGlite): any value comes back as it went in, and nothing in a value is
 * ever read as SQL.
 */
import fc from "fast-check";
import { PGlite } from "@electric-sql/pglite";
import { inlineSql, isUniqueViolation } from "../../lib/sql";

let db: PGlite;
const one = async <T>(sql: string, replacements: Record<string, unknown>) => (await db.query<{ v: T }>(inlineSql(sql, replacements))).rows[0].v;

beforeAll(async () => {
	db = await PGlite.create();
	await db.exec("CREATE TABLE kept (id int PRIMARY KEY, note text)");
});
afterAll(() => db.close());

describe("inlineSql", () => {
	it("writes any text as a literal that PostgreSQL reads back unchanged (a NUL as the two characters \\0)", async () => {
		await fc.assert(
			fc.asyncProperty(fc.string({ unit: "binary" }), async text => {
				expect(await one<string>("SELECT :v::text AS v", { v: text })).toBe(text.replace(/\0/g, "\\0"));
			}),
			{ numRuns: 300 },
		);
	});

	it("writes lists as ARRAY elements, numbers, booleans, dates, objects and null", async () => {
		await fc.assert(
			fc.asyncProperty(fc.array(fc.string({ unit: "grapheme" })), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), async (list, int, dbl) => {
				expect(await one<string[]>("SELECT ARRAY[:v]::text[] AS v", { v: list })).toEqual(list);
				expect(await one<number>("SELECT :v::int AS v", { v: int })).toBe(int);
				expect(await one<number>("SELECT :v::float8 AS v", { v: dbl })).toBe(dbl === 0 ? 0 : dbl);
			}),
			{ numRuns: 100 },
		);
		const at = new Date("2026-12-03T10:20:30.456Z");
		expect(await one<Date>("SELECT :v::timestamptz AS v", { v: at })).toEqual(at);
		expect(await one<boolean>("SELECT :v AND true AS v", { v: false })).toBe(false);
		expect(await one<unknown>("SELECT :v::jsonb AS v", { v: { a: [1, "it's"] } })).toEqual({ a: [1, "it's"] });
		expect(await one<null>("SELECT :v::text AS v", { v: null })).toBeNull();
		expect(() => inlineSql("SELECT :v", { v: Number.NaN })).toThrow(/finite/);
	});

	it("never reads a value as SQL: an injection attempt is stored as text", async () => {
		const attack = "x'); DELETE FROM kept; --";
		await db.query(inlineSql("INSERT INTO kept (id, note) VALUES (:id, :note)", { id: 1, note: attack }));
		await db.query(inlineSql("INSERT INTO kept (id, note) VALUES (:id, :note)", { id: 2, note: "\\'; DROP TABLE kept; --" }));
		expect((await db.query<{ note: string }>("SELECT note FROM kept ORDER BY id")).rows.map(r => r.note)).toEqual([attack, "\\'; DROP TABLE kept; --"]);
	});

	it("leaves casts, string literals, quoted names and comments alone, and names a replacement without a value", () => {
		expect(inlineSql(`SELECT ':a', "x:a", :a::int /* :a */ -- :a`, { a: 7 })).toBe(`SELECT ':a', "x:a", 7::int /* :a */ -- :a`);
		expect(inlineSql("SELECT :a + :a", { a: 2 })).toBe("SELECT 2 + 2");
		expect(inlineSql("SELECT 1 -:a", { a: -2 })).toBe("SELECT 1 -(-2)"); // not the comment `--2`
		expect(() => inlineSql("SELECT :missing", {})).toThrow(":missing has no value");
	});

	it("knows a unique violation from PostgreSQL's code", async () => {
		const err = await db.query("INSERT INTO kept (id, note) VALUES (1, 'again')").catch(e => e);
		expect(isUniqueViolation(err)).toBe(true);
		expect(isUniqueViolation(new Error("other"))).toBe(false);
	});
});
