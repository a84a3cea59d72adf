/**
 * The hot path's SQL (lib/sql.ts): named replacements written as literals, checked against
 * PostgreSQL's own parser (PGlite): any value comes back as it went in, and nothing in a value is
 * ever read as SQL.
 */
import fc from "fast-check";
import { PGlite } from "@electric-sql/pglite";
import { escapeLiteral } from "pg";
import { inlineSql, isUniqueViolation, preparedStatement, withConnection } from "../../lib/sql";
import { openDatabase } from "../../lib/database";
import type { Config } from "../../lib/config";

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

	it("writes text exactly as pg's escapeLiteral does (its faster equal)", () => {
		// Any text, and text made of the characters that need escaping.
		const texts = fc.oneof(fc.string({ unit: "binary" }), fc.string({ unit: fc.constantFrom("'", "\\", '"', "\0", "{", ",", "a", "é") }));
		fc.assert(
			fc.property(texts, fc.array(texts), (text, list) => {
				const noNul = (s: string) => s.replace(/\0/g, "\\0");
				expect(inlineSql(":v", { v: text })).toBe(escapeLiteral(noNul(text)));
				expect(inlineSql("ARRAY[:v]", { v: list })).toBe(list.length ? `ARRAY[${list.map(v => escapeLiteral(noNul(v))).join(", ")}]` : "ARRAY[]");
			}),
			{ numRuns: 1000 },
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

describe("preparedStatement", () => {
	const prepared = new Set<string>();
	/** The value as the prepared statement gives it back (PREPARE once per text, then EXECUTE). */
	const viaPrepared = async <T>(sql: string, replacements: Record<string, unknown>) => {
		const statement = preparedStatement(sql, replacements)!;
		if (!prepared.has(statement.prepare)) {
			await db.exec(statement.prepare);
			prepared.add(statement.prepare);
		}
		return (await db.query<{ v: T }>(statement.execute)).rows[0].v;
	};

	it("gives back what the literal statement gives, for any text, list, number and JSON", async () => {
		const sql = "SELECT ARRAY[:list]::text[] || :single::text AS v";
		await fc.assert(
			fc.asyncProperty(fc.array(fc.option(fc.string({ unit: "binary" }))), fc.string({ unit: "grapheme" }), async (list, single) => {
				const replacements = { list, single };
				expect(await viaPrepared(sql, replacements)).toEqual(await one(sql, replacements));
			}),
			{ numRuns: 200 },
		);
		await fc.assert(
			fc.asyncProperty(fc.array(fc.jsonValue()), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), async (docs, int, dbl) => {
				const sql2 = "SELECT jsonb_build_array(ARRAY[:docs]::jsonb[], :int::int, :dbl::float8, :at::timestamptz, :flag::boolean) AS v";
				const replacements = { docs: docs.map(d => JSON.stringify(d)), int, dbl, at: new Date(1_700_000_000_000 + int), flag: int % 2 === 0 };
				expect(await viaPrepared(sql2, replacements)).toEqual(await one(sql2, replacements));
			}),
			{ numRuns: 100 },
		);
	});

	it("never reads a value as SQL", async () => {
		const attack = ["x'); DELETE FROM kept; --", '"}\\"', "\\'; DROP TABLE kept; --"];
		const statement = preparedStatement("INSERT INTO kept (id, note) SELECT 10 + i, n FROM unnest(ARRAY[:notes]::text[]) WITH ORDINALITY AS t (n, i)", { notes: attack })!;
		await db.exec(`${statement.prepare}; ${statement.execute}`);
		expect((await db.query<{ note: string }>("SELECT note FROM kept WHERE id > 10 ORDER BY id")).rows.map(r => r.note)).toEqual(attack);
		expect((await db.query<{ n: number }>("SELECT count(*)::int AS n FROM kept")).rows[0].n).toBe(2 + attack.length);
	});

	it("has none where a list fills a value's place, and one parameter per name", () => {
		expect(preparedStatement("SELECT :a::int[]", { a: [1, 2] })).toBeUndefined();
		expect(preparedStatement("SELECT :a::int + :a + :b::int", { a: 1, b: 2 })).toMatchObject({ execute: expect.stringMatching(/^EXECUTE stmt_\d+\(1, 2\)$/) });
		expect(preparedStatement("SELECT :a::int + :a + :b::int", { a: 1, b: 2 })!.prepare).toMatch(/ AS SELECT \$1::int \+ \$1 \+ \$2::int$/);
	});
});

describe("the embedded database's pooled clients", () => {
	it("refuse bound parameters and named statements before sending them (the one session would interleave them), and serve simple queries", async () => {
		const db = await openDatabase({ dataDir: "memory://", dbPoolMax: 2 } as Config);
		try {
			const refused = /simple query protocol only/;
			await expect(db.sequelize.query("SELECT $1::int AS n", { bind: [1] })).rejects.toThrow(refused);
			await withConnection(db.sequelize, async client => {
				const pg = client as unknown as { query(config: object): Promise<unknown> };
				await expect(async () => pg.query({ text: "SELECT 1", name: "one" })).rejects.toThrow(refused);
				await expect(async () => pg.query({ text: "SELECT $1::int", values: [1] })).rejects.toThrow(refused);
			});
			expect(await db.sequelize.query("SELECT 2 AS n", { plain: true })).toEqual({ n: 2 });
		} finally {
			await db.close();
		}
	});
});
