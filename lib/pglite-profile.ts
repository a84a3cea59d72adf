/**
 * Where the embedded database's time goes, by statement (`PGLITE_PROFILE`): PGlite runs one message
 * of the wire protocol at a time on its thread, so the time each message holds that thread is the
 * database's cost of what it carries. Messages are grouped by the shapes of their statements
 * (prepared statements by the text they were prepared with), the totals written to a JSON file
 * every quarter second, so a benchmark can subtract two readings to get its load's window.
 */
import { writeFileSync } from "node:fs";

export type StatementProfile = Record<string, { count: number; ms: number }>;

/** A statement's shape: whitespace folded, literals and parameters replaced, cut at 120 characters. */
export const statementShape = (sql: string): string =>
	sql
		.replace(/\s+/g, " ")
		.replace(/'(?:[^']|'')*'/g, "?")
		.replace(/\$\d+|\b\d+\b/g, "?")
		.trim()
		.slice(0, 120);

/**
 * The shapes of the statements in one protocol message: a simple query's statements (a prepared
 * statement's EXECUTE named by what it was prepared as), or an extended query's Parse and Bind.
 * `prepared` learns the statements' names as they are prepared.
 */
export function messageShapes(message: Uint8Array, prepared: Map<string, string>): string[] {
	const buf = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
	const cstring = (at: number) => buf.toString("utf8", at, buf.indexOf(0, at));
	const shapes: string[] = [];
	for (let i = 0; i + 5 <= buf.length; i += 1 + buf.readInt32BE(i + 1)) {
		const type = String.fromCharCode(buf[i]);
		const body = i + 5;
		if (type === "Q") {
			for (const statement of cstring(body).split(/;\s*(?=BEGIN|COMMIT|ROLLBACK|PREPARE|EXECUTE|SELECT|INSERT|UPDATE|DELETE|WITH)/i)) {
				const prepare = /^\s*PREPARE (\w+)(?:\([^)]*\))? AS ([\s\S]*)$/i.exec(statement);
				if (prepare) prepared.set(prepare[1], statementShape(prepare[2]));
				const execute = /^\s*EXECUTE (\w+)/i.exec(statement);
				shapes.push(prepare ? "PREPARE" : execute ? (prepared.get(execute[1]) ?? "EXECUTE ?") : statementShape(statement));
			}
		} else if (type === "P") {
			const name = cstring(body);
			const sql = cstring(body + Buffer.byteLength(name) + 1);
			if (name) prepared.set(name, statementShape(sql));
			shapes.push(statementShape(sql));
		} else if (type === "B") {
			const portal = cstring(body);
			const name = cstring(body + Buffer.byteLength(portal) + 1);
			if (name && prepared.has(name)) shapes.push(prepared.get(name)!);
		}
	}
	return shapes.filter(s => s !== "");
}

/** Times every message PGlite runs and keeps the totals in `file`. */
export function profileStatements(db: { execProtocolRawStream: (message: Uint8Array, ...rest: any[]) => Promise<unknown> }, file: string): () => void {
	const prepared = new Map<string, string>();
	const totals: StatementProfile = {};
	const run = db.execProtocolRawStream.bind(db);
	db.execProtocolRawStream = async (message: Uint8Array, ...rest: any[]) => {
		const key = messageShapes(message, prepared).join(" ; ") || "(no statement)";
		const started = performance.now();
		try {
			return await run(message, ...rest);
		} finally {
			const entry = (totals[key] ??= { count: 0, ms: 0 });
			entry.count++;
			entry.ms += performance.now() - started;
		}
	};
	const write = () => writeFileSync(file, JSON.stringify(totals));
	const timer = setInterval(write, 250);
	timer.unref();
	return () => {
		clearInterval(timer);
		write();
	};
}

/** The difference of two readings: what ran between them, most time first. */
export function profileBetween(before: StatementProfile, after: StatementProfile): Array<{ statements: string; count: number; ms: number }> {
	return Object.entries(after)
		.map(([statements, a]) => ({ statements, count: a.count - (before[statements]?.count ?? 0), ms: a.ms - (before[statements]?.ms ?? 0) }))
		.filter(e => e.count > 0)
		.sort((x, y) => y.ms - x.ms);
}
