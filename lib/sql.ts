import type { Sequelize } from "sequelize";
import type { Transaction } from "./transactions";
import { quoteIdent, type Migration } from "./migrations";

/** The slice of a `pg` client the hot path uses. */
export interface PgClient {
	/** A simple-protocol query: one statement's result, or one per statement of a multi-statement text. */
	query(text: string): Promise<{ rows: unknown[] } | Array<{ rows: unknown[] }>>;
	/** Set by Sequelize's pool on a client that failed: the pool drops it instead of handing it out again. */
	_invalid?: boolean;
}

// String literals, quoted names and comments are skipped and `::` is a cast; `ARRAY[:name]` is a list
// replacement; every other `:name` is a replacement.
const TOKENS = /'(?:[^']|'')*'|"(?:[^"]|"")*"|\/\*[\s\S]*?\*\/|--[^\n]*|::|ARRAY\[:([A-Za-z_]\w*)\]|:([A-Za-z_]\w*)/g;

/** A number, bigint or boolean as PostgreSQL reads it; undefined for any other value. */
function plain(value: unknown): string | undefined {
	if (typeof value === "number" && !Number.isFinite(value)) throw new Error(`SQL replacement is not a finite number: ${value}`);
	return typeof value === "number" || typeof value === "bigint" || typeof value === "boolean" ? String(value) : undefined;
}

/** A value as an SQL literal, as Sequelize's replacements wrote it: a list as its elements, comma-separated. */
function literal(value: unknown): string {
	if (value === null || value === undefined) return "NULL";
	if (Array.isArray(value)) return value.map(literal).join(", ");
	const written = plain(value);
	// In parentheses when negative: `x -:n` must not become a comment, nor `-n::int` a cast of n.
	if (written !== undefined) return (value as number) < 0 ? `(${written})` : written;
	return quoteLiteral(text(value));
}

/**
 * Text as a string literal, exactly as `pg`'s escapeLiteral writes it (quotes and backslashes
 * doubled, E'' when there is a backslash), by one native replace instead of its appends of one
 * character at a time: about ten times faster on the envelopes of a kilobyte or more that every
 * outbox and inbox statement carries.
 */
function quoteLiteral(s: string): string {
	const body = s.replace(/['\\]/g, "$&$&");
	return s.includes("\\") ? ` E'${body}'` : `'${body}'`;
}

/** A non-numeric, non-null value as PostgreSQL reads it from text. */
function text(value: unknown): string {
	if (value instanceof Date) return value.toISOString();
	if (typeof value === "object") return JSON.stringify(value);
	// A NUL would end the statement's text on the wire: written as the two characters \0, as Sequelize did.
	return String(value).replace(/\0/g, "\\0");
}

/** A list as one array literal (`'{"a","b"}'`), the argument of a prepared statement's array parameter. */
function arrayLiteral(values: unknown[]): string {
	const element = (v: unknown) => (v === null || v === undefined ? "NULL" : `"${(plain(v) ?? text(v)).replace(/[\\"]/g, "\\$&")}"`);
	return quoteLiteral(`{${values.map(element).join(",")}}`);
}

/** A statement's text split at its replacements once (not scanned again per call), and its prepared form. */
interface Template {
	/** The text around the replacements: `parts[i]`, replacement `slots[i]`, ..., the last part. */
	parts: string[];
	slots: Array<{ name: string; list: boolean }>;
	/** Its name, its `PREPARE` (`$n` parameters, a list as one array parameter) and their order, when it has one. */
	prepared?: { name: string; prepare: string; params: Array<{ name: string; list: boolean }> };
	/** Whether PostgreSQL prepares it: unknown until a first PREPARE has answered. */
	preparable?: boolean;
}

const templates = new Map<string, Template>();
/** Prepared statement name → its text, to tell what an EXECUTE runs (statementsOf). */
const preparedTexts = new Map<string, string>();
const TEMPLATES_MAX = 5000; // statements are the code's: a bound only against text built from data

function templateOf(sql: string): Template {
	const known = templates.get(sql);
	if (known) return known;
	const parts: string[] = [];
	const slots: Template["slots"] = [];
	let from = 0;
	for (const m of sql.matchAll(TOKENS)) {
		const name = m[1] ?? m[2];
		if (name === undefined) continue;
		parts.push(sql.slice(from, m.index));
		slots.push({ name, list: m[1] !== undefined });
		from = m.index + m[0].length;
	}
	parts.push(sql.slice(from));
	const template: Template = { parts, slots };
	// One parameter per name; a name used both as a list and as a value has no prepared form.
	const params: Array<{ name: string; list: boolean }> = [];
	const index = new Map<string, number>();
	for (const slot of slots) {
		if (!index.has(slot.name)) index.set(slot.name, params.push(slot));
		else if (params[index.get(slot.name)! - 1].list !== slot.list) return remember(sql, template);
	}
	const textWithParams = parts.map((part, i) => (i < slots.length ? `${part}$${index.get(slots[i].name)}` : part)).join("");
	const name = `stmt_${templates.size + 1}`;
	template.prepared = { name, prepare: `PREPARE ${name} AS ${textWithParams}`, params };
	return remember(sql, template, textWithParams);
}

function remember(sql: string, template: Template, textWithParams?: string): Template {
	if (templates.size >= TEMPLATES_MAX) template.prepared = undefined; // its name would not be unique
	else templates.set(sql, template);
	if (template.prepared && textWithParams) preparedTexts.set(template.prepared.name, textWithParams);
	return template;
}

function valueOf(replacements: Record<string, unknown>, name: string): unknown {
	if (!(name in replacements)) throw new Error(`SQL replacement :${name} has no value`);
	return replacements[name];
}

/**
 * Named replacements (`:name`, the project's SQL style) written into the statement as literals.
 * Every statement, prepared ones included (`EXECUTE name(literals)`), is a one-message simple
 * query. Why not the extended protocol's `$1` parameters: embedded, the PGlite socket server runs
 * each protocol message of every connection through one session and keeps a connection's messages
 * together only inside a transaction, so two connections' Parse/Bind/Execute outside one interleave
 * ("unnamed prepared statement does not exist"). A one-message simple query cannot.
 */
export function inlineSql(sql: string, replacements: Record<string, unknown>): string {
	return inline(templateOf(sql), replacements);
}

function inline({ parts, slots }: Template, replacements: Record<string, unknown>): string {
	let out = parts[0];
	for (let i = 0; i < slots.length; i++) {
		const value = valueOf(replacements, slots[i].name);
		out += (slots[i].list ? `ARRAY[${literal(value)}]` : literal(value)) + parts[i + 1];
	}
	return out;
}

/**
 * The statement as a prepared statement: the `PREPARE` that defines it (`$n` parameters, a list as
 * one array parameter) and the `EXECUTE` that runs it with these values as literals. None when the
 * text has no prepared form or a value does not fit its parameter (a list where a value goes).
 */
export function preparedStatement(sql: string, replacements: Record<string, unknown>): { prepare: string; execute: string } | undefined {
	const { prepared } = templateOf(sql);
	const execute = prepared && executeOf(prepared, replacements);
	return execute ? { prepare: prepared.prepare, execute } : undefined;
}

function executeOf({ name, params }: NonNullable<Template["prepared"]>, replacements: Record<string, unknown>): string | undefined {
	const args: string[] = [];
	for (const param of params) {
		const value = valueOf(replacements, param.name);
		if (Array.isArray(value) !== param.list) return undefined;
		args.push(param.list ? arrayLiteral(value as unknown[]) : literal(value));
	}
	return args.length > 0 ? `EXECUTE ${name}(${args.join(", ")})` : `EXECUTE ${name}`;
}

/**
 * The prepared statements of a PostgreSQL session. Embedded, PGlite is one session behind every
 * pooled client; on a server each client is a session of its own.
 */
interface Session {
	prepared: Set<string>;
	probing: Set<string>;
	perClient: boolean;
}
const sharedSessions = new WeakMap<Sequelize, Session>();
const clientSessions = new WeakMap<PgClient, Session>();
const newSession = (perClient: boolean): Session => ({ prepared: new Set(), probing: new Set(), perClient });

/**
 * Embedded: every pooled client of `sequelize` speaks to one PostgreSQL session, so each may use
 * the simple query protocol only. PGlite's socket server keeps one client's messages together only
 * inside a transaction: another client's Parse or Bind could come between a Parse, its Bind and its
 * Execute, which share the session's unnamed statement and portal (electric-sql/pglite#1046). The
 * hot path writes values as literals (inlineSql); a query with bound values or a name is refused
 * here, before anything is sent.
 */
export function shareOneSession(sequelize: Sequelize): void {
	sharedSessions.set(sequelize, newSession(false));
	sequelize.addHook("afterConnect", connection => {
		type Query = (this: unknown, ...args: unknown[]) => unknown;
		const client = connection as { query: Query };
		// The class's query looked up at each call, so whoever wraps it (the statement counter) still sees every call.
		const proto = Object.getPrototypeOf(client) as { query: Query };
		client.query = function (...args) {
			if (usesExtendedProtocol(args)) throw new Error("The embedded database takes the simple query protocol only: write values as literals (lib/sql.ts inlineSql), not as bound parameters");
			return proto.query.apply(this, args);
		};
	});
}

/** Whether `pg`'s `query(config, values)` would send Parse/Bind/Execute: values to bind, a statement name, or the extended mode asked for. */
function usesExtendedProtocol([config, values]: unknown[]): boolean {
	if (Array.isArray(values) && values.length > 0) return true;
	if (typeof config !== "object" || config === null) return false;
	const { name, values: bound, queryMode } = config as { name?: string; values?: unknown[]; queryMode?: string };
	return Boolean(name) || Boolean(bound?.length) || queryMode === "extended";
}

function sessionOf(sequelize: Sequelize, client: PgClient): Session {
	const shared = sharedSessions.get(sequelize);
	if (shared) return shared;
	let own = clientSessions.get(client);
	if (!own) clientSessions.set(client, (own = newSession(true)));
	return own;
}

/** A refusal of PREPARE that will not change (class 42: the text's parameter types cannot be inferred). */
const isPermanentRefusal = (err: unknown) => /^42/.test((err as { code?: string } | undefined)?.code ?? "");

/**
 * A statement's first PREPARE runs on a pooled client outside any transaction, while the calls go
 * on as literals: a statement PostgreSQL will not prepare (a parameter whose type it cannot infer)
 * then aborts no transaction, and is never tried again.
 */
function probe(sequelize: Sequelize, template: Template, session: Session): void {
	const { name, prepare } = template.prepared!;
	session.probing.add(name);
	void withConnection(sequelize, async client => {
		// On a server, another call's PREPARE may have reached this client first.
		const own = sessionOf(sequelize, client);
		if (!own.prepared.has(name)) await client.query(prepare);
		own.prepared.add(name);
		template.preparable = true;
	}).catch(err => {
		if (isPermanentRefusal(err)) template.preparable = false;
		else session.probing.delete(name); // the pool closing, a lost connection: try again later
	});
}

/**
 * What to send for a statement on `client`: its prepared statement's EXECUTE (PostgreSQL skips
 * parsing and, once it has a generic plan, planning: most of what a short statement costs it),
 * preceded by its PREPARE on a server client that has not seen it yet (one message, so one round
 * trip), or the statement with literals until it is prepared.
 */
export function statementFor(sequelize: Sequelize, client: PgClient, sql: string, replacements: Record<string, unknown>, sentNow = true): string {
	const template = templateOf(sql);
	const { prepared } = template;
	if (!prepared || template.preparable === false) return inline(template, replacements);
	const session = sessionOf(sequelize, client);
	if (session.prepared.has(prepared.name)) return executeOf(prepared, replacements) ?? inline(template, replacements);
	// Marked as prepared before it is sent: only for a message sent now (a queued write may never be).
	if (session.perClient && template.preparable && sentNow) {
		const execute = executeOf(prepared, replacements);
		if (execute) {
			session.prepared.add(prepared.name);
			return `${prepared.prepare}${SEPARATOR}${execute}`;
		}
	}
	if (!session.probing.has(prepared.name)) probe(sequelize, template, session);
	return inline(template, replacements);
}

/** Between the statements of a message (a transaction's BEGIN, queued writes, a PREPARE and the statement). */
export const SEPARATOR = ";\n";

/**
 * The statements of a message sent by this module or a transaction, an EXECUTE as the text of the
 * statement it runs: what the statement counts read. (Split at SEPARATOR: a value holding that
 * text would count as two, which only a count would notice.)
 */
export function statementsOf(message: string): string[] {
	return message.split(SEPARATOR).map(statement => preparedTexts.get(/^EXECUTE (stmt_\d+)/.exec(statement)?.[1] ?? "") ?? statement);
}

type Results = { rows: unknown[] } | Array<{ rows: unknown[] }>;

/** The rows of a message's last statement (a message may carry BEGIN, a PREPARE or queued writes before it). */
export function lastRows(result: Results): unknown[] {
	return Array.isArray(result) ? result[result.length - 1].rows : result.rows;
}

/**
 * The rows of each of `texts`, sent (from statementFor) at the end of a message: each text's last
 * statement, counted from the message's end (a text that carries its PREPARE is two statements).
 */
export function rowsOfEach(result: Results, texts: string[]): unknown[][] {
	const results = Array.isArray(result) ? result : [result];
	const rows: unknown[][] = [];
	let at = results.length;
	for (let i = texts.length - 1; i >= 0; i--) {
		rows[i] = results[--at].rows;
		if (texts[i].startsWith("PREPARE ")) at--;
	}
	return rows;
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
	if (tx) return (await tx.query(statementFor(sequelize, tx.connection, sql, replacements))) as T[];
	return withConnection(sequelize, async client => lastRows(await client.query(statementFor(sequelize, client, sql, replacements))) as T[]);
}

/** The transaction's last statement, sent with its COMMIT in one message (Transaction.queryAndCommit): its rows. */
export async function sqlQueryAndCommit<T extends object>(sequelize: Sequelize, sql: string, replacements: Record<string, unknown>, tx: Transaction): Promise<T[]> {
	return (await tx.queryAndCommit(statementFor(sequelize, tx.connection, sql, replacements))) as T[];
}

/** A statement with its named replacements. */
export type Statement = [sql: string, replacements: Record<string, unknown>];

/**
 * A read a transaction decides its writes from: `SELECT <columns> FROM <table> WHERE <where> ORDER
 * BY <orderBy>` (`orderBy` unique, so concurrent lockers take the rows in one order and never
 * deadlock), its rows locked until the commit. `schema` owns `unchanged_since_read`.
 */
export interface LockedRead {
	schema: string;
	table: string;
	where: string;
	orderBy: string;
	columns: string;
	replacements: Record<string, unknown>;
	/**
	 * The rows as the read would return them, each with its version (`WITH_ROW_VERSION` in the
	 * RETURNING of the write that made them): taken instead of reading ahead, and guarded the same.
	 */
	known?: object[];
}

/** In every service's schema (DbMixin): the guard of a read ahead, which fails its transaction (40001) when the rows changed. */
export const UNCHANGED_SINCE_READ: Migration = {
	id: "db-001-unchanged-since-read",
	sql: `CREATE OR REPLACE FUNCTION unchanged_since_read(unchanged boolean) RETURNS void LANGUAGE plpgsql AS $$
	      BEGIN
	        IF NOT unchanged THEN RAISE EXCEPTION 'rows changed since they were read' USING ERRCODE = 'serialization_failure'; END IF;
	      END $$`,
};

// A row version: its tuple (ctid) and the transaction that wrote it (xmin). Any UPDATE or DELETE
// and re-INSERT of the row gives it another.
const VERSION = "ctid::text || '/' || xmin::text";
const VERSION_COLUMN = "row_version_";
/** A row's version as a column (`RETURNING *, ${WITH_ROW_VERSION}`), for a later LockedRead's `known`. */
export const WITH_ROW_VERSION = `${VERSION} AS ${VERSION_COLUMN}`;
const selectOf = (r: LockedRead, what: string, lock: string) => `SELECT ${what} FROM ${r.table} WHERE ${r.where} ORDER BY ${r.orderBy}${lock}`;

/**
 * Reads that do not depend on each other's results, in one message: the rows of each. Locked
 * reads lock their rows in the transaction, or, while it may still read ahead (TransactionOptions),
 * are sent before it without locks, each with its rows' versions, and queue a guard that locks the
 * same rows and fails the transaction if their versions are no longer those read. A locked read's
 * `known` rows are taken instead of reading, before the transaction or within it, and guarded the
 * same, on every try that may fail (not the last, which locks as it reads).
 */
export async function sqlQueryEach(sequelize: Sequelize, reads: Array<Statement | LockedRead>, tx: Transaction): Promise<unknown[][]> {
	const render = ([sql, replacements]: Statement) => statementFor(sequelize, tx.connection, sql, replacements);
	const ahead = tx.mayReadAhead;
	const taken = (r: Statement | LockedRead): r is LockedRead & { known: object[] } => !Array.isArray(r) && r.known !== undefined && tx.optimistic;
	const sent = reads.filter(r => !taken(r));
	const texts = sent.map(r => render(Array.isArray(r) ? r : [ahead ? selectOf(r, `${WITH_ROW_VERSION}, ${r.columns}`, "") : selectOf(r, r.columns, " FOR UPDATE"), r.replacements]));
	const fetched = texts.length === 0 ? [] : ahead ? await tx.readAhead(texts) : await tx.queryEach(texts);
	return reads.map(read => {
		if (taken(read)) return guarded(sequelize, read, read.known, tx);
		const rows = fetched.shift()!;
		return ahead && !Array.isArray(read) ? guarded(sequelize, read, rows, tx) : rows;
	});
}

/** Queues the guard of `read`, whose rows (with their versions) were read ahead or known: the rows without their versions. */
function guarded(sequelize: Sequelize, read: LockedRead, rows: unknown[], tx: Transaction): unknown[] {
	const versions = (rows as Array<Record<string, unknown>>).map(row => row[VERSION_COLUMN] as string);
	const guard = `SELECT ${quoteIdent(read.schema)}.unchanged_since_read(ARRAY(${selectOf(read, VERSION, " FOR UPDATE")}) = ARRAY[:readVersions]::text[])`;
	tx.queue(statementFor(sequelize, tx.connection, guard, { ...read.replacements, readVersions: versions }, false), "check");
	return (rows as Array<Record<string, unknown>>).map(({ [VERSION_COLUMN]: _version, ...row }) => row);
}

/** A write sent with the transaction's next statement or its COMMIT (Transaction.queue); `onRows` gets its rows then. */
export function queueSql(sequelize: Sequelize, tx: Transaction, sql: string, replacements: Record<string, unknown>, kind?: "write" | "check", onRows?: (rows: unknown[]) => void): void {
	tx.queue(statementFor(sequelize, tx.connection, sql, replacements, false), kind, onRows);
}

/** A unique constraint refused the write (SQLSTATE 23505, as `pg` reports it). */
export function isUniqueViolation(err: unknown): boolean {
	return (err as { code?: string } | undefined)?.code === "23505";
}
