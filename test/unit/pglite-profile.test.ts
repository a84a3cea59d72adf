import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Client } from "pg";
import { messageShapes, profileBetween, statementShape, type StatementProfile } from "../../lib/pglite-profile";
import { startPgliteThread } from "../../lib/pglite-thread";

/** One frontend message of PostgreSQL's wire protocol: type, length, body. */
const message = (type: string, ...parts: Array<string | Buffer>) => {
	const body = Buffer.concat(parts.map(p => (typeof p === "string" ? Buffer.from(`${p}\0`) : p)));
	const head = Buffer.alloc(5);
	head.write(type, 0);
	head.writeInt32BE(body.length + 4, 1);
	return Buffer.concat([head, body]);
};

describe("PGlite's statement profile", () => {
	it("shapes a statement: whitespace folded, literals and numbers replaced", () => {
		expect(statementShape("SELECT *\n  FROM t WHERE id = 'x''y' AND n = 42 AND p = $1")).toBe("SELECT * FROM t WHERE id = ? AND n = ? AND p = ?");
	});

	it("names a prepared statement's EXECUTE by the text it was prepared with, in a simple query of several statements", () => {
		const prepared = new Map<string, string>();
		expect(messageShapes(message("Q", "PREPARE stmt_1(uuid) AS SELECT * FROM t WHERE id = $1"), prepared)).toEqual(["PREPARE"]);
		expect(messageShapes(message("Q", "BEGIN; EXECUTE stmt_1('6f0f040b-3f8f-40c0-a852-8b823b3a5a3b'); COMMIT"), prepared)).toEqual(["BEGIN", "SELECT * FROM t WHERE id = ?", "COMMIT"]);
	});

	it("reads an extended query's Parse and Bind, several messages in one buffer", () => {
		const prepared = new Map<string, string>();
		const parse = message("P", "s1", "UPDATE t SET n = $1", Buffer.from([0, 0]));
		const bind = message("B", "", "s1", Buffer.from([0, 0, 0, 0, 0, 0]));
		expect(messageShapes(Buffer.concat([parse, bind, message("S")]), prepared)).toEqual(["UPDATE t SET n = ?", "UPDATE t SET n = ?"]);
		expect(messageShapes(bind, prepared)).toEqual(["UPDATE t SET n = ?"]);
	});

	it("takes the difference of two readings, most time first, leaving out what did not run between them", () => {
		const before = { a: { count: 2, ms: 5 }, b: { count: 1, ms: 1 } };
		const after = { a: { count: 5, ms: 8 }, b: { count: 1, ms: 1 }, c: { count: 1, ms: 9 } };
		expect(profileBetween(before, after)).toEqual([
			{ statements: "c", count: 1, ms: 9 },
			{ statements: "a", count: 3, ms: 3 },
		]);
	});
});

it("keeps the time of each statement PGlite runs in PGLITE_PROFILE's file (a real PGlite thread)", async () => {
	const dir = mkdtempSync(path.join(tmpdir(), "pglite-profile-"));
	const profileFile = path.join(dir, "profile.json");
	const thread = await startPgliteThread({ dataDir: "memory://", maxConnections: 2, profileFile });
	const client = new Client({ host: thread.socketDir, port: thread.port, user: "postgres", database: "postgres" });
	try {
		await client.connect();
		await client.query("SELECT 41 + 1 AS profiled");
		await client.query("SELECT 41 + 1 AS profiled");
		await client.end();
		await thread.stop(); // writes the last totals
		const totals = JSON.parse(readFileSync(profileFile, "utf8")) as StatementProfile;
		expect(totals["SELECT ? + ? AS profiled"]).toMatchObject({ count: 2 });
		expect(totals["SELECT ? + ? AS profiled"].ms).toBeGreaterThan(0);
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
});
