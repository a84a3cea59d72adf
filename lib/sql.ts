import { escapeLiteral } from "pg";
import type { Sequelize } from "sequelize";
import type { Transaction } from "./transactions";

/** The slice of a `pg` client the hot path uses. */
export interface PgClient {
	query(text: string): Promise<{ rows: unknown[] }>;
	/** Set by Sequelize's pool on a client that failed: the pool drops it instead of handing it out again. */
	_invalid?: boolean;
}

// String literals, quoted names and comments are skipped and `::` is a cast; every other `:name` is a replacement.
const TOKENS = /'(?:[^']|'')*'|"(?:[^"]|"")*"|\/\*[\s\S]*?\*\/|--[^\n]*|::|:([A-Za-z_]\w*)/g;

/** A value as an SQL literal, as Sequelize's replacements wrote it: a list as its elements, comma-separated. */
function literal(value: unknown): string {
	if (value === null || value === undefined) return "NULL";
	if (Array.isArray(value)) return value.map(literal).join(", ");
	if (typeof value === "number" || typeof value === "bigint") {
		if (typeof value === "number" && !Number.isFinite(value)) throw new Error(`SQL replacement is not a finite number: ${value}`);
		// In parentheses when negative: `x -:n` must not become a comment, nor `-n::int` a cast of n.
		return value < 0 ? `(${value})` : String(value);
	}
	if (typeof value === "boolean") return value ? "true" : "false";
	if (value instanceof Date) return escapeLiteral(value.toISOString());
	if (typeof value === "object") return escapeLiteral(JSON.stringify(value));
	// A NUL would end the statement's text on the wire: written as the two characters \0, as Sequelize did.
	return escapeLiteral(String(value).replace(/\0/g, "\\0"));
}

/**
 * Named replacements (`:name`, the project's SQL style) written into the statement as literals,
 * in one pass. Why not `$1` parameters: embedded, the PGlite socket server runs each protocol
 * message of every connection through one session and keeps a connection's messages together only
 * inside a transaction, so two connections' Parse/Bind/Execute outside one interleave ("unnamed
 * prepared statement does not exist"). A one-message simple query cannot.
 */
export function inlineSql(sql: string, replacements: Record<string, unknown>): string {
	return sql.replace(TOKENS, (token, name: string | undefined) => {
		if (name === undefined) return token;
		if (!(name in replacements)) throw new Error(`SQL replacement :${name} has no value`);
		return literal(replacements[name]);
	});
}

type Pool = { getConnection(o: object): Promise<PgClient>; releaseConnection(c: PgClient): Promise<void> };

/** One of the node's pooled `pg` clients (Sequelize's pool: its clients, type parsers and connection checks) for `fn`. */
export async function withConnection<T>(sequelize: Sequelize, fn: (client: PgClient) => Promise<T>): Promise<T> {
	const pool = (sequelize as unknown as { connectionManager: Pool }).connectionManager;
	const client = await pool.getConnection({ type: "SELECT" });
	try {
		return await fn(client);
	} finally {
		await pool.releaseConnection(client);
	}
}

/**
 * A statement through `pg` itself, in the transaction or on a pooled client, without Sequelize's
 * query building and result handling (8 % of the embedded node's thread in profiles).
 * Rows as objects: a write's RETURNING rows, or none.
 */
export async function sqlQuery<T extends object>(sequelize: Sequelize, sql: string, replacements: Record<string, unknown> = {}, tx?: Transaction): Promise<T[]> {
	const text = inlineSql(sql, replacements);
	const run = async (client: PgClient) => (await client.query(text)).rows as T[];
	return tx ? run(tx.connection) : withConnection(sequelize, run);
}

/** A unique constraint refused the write (SQLSTATE 23505, as `pg` reports it). */
export function isUniqueViolation(err: unknown): boolean {
	return (err as { code?: string } | undefined)?.code === "23505";
}
