import type { Service, ServiceSchema } from "moleculer";
import MoleculerDbService from "moleculer-db";
import SequelizeAdapter from "moleculer-db-adapter-sequelize";
import { type ModelAttributes, type ModelOptions, type ModelStatic, type Model, type Sequelize } from "sequelize";
import type { Context } from "moleculer";
import { runtimeOf } from "../lib/runtime";
import { countMetric } from "../lib/metrics";
import { quoteIdent, runMigrations, type Migration } from "../lib/migrations";
import { inTransaction, type Transaction, type TransactionOptions } from "../lib/transactions";
import { offsetOf, pageOf, type Page } from "../lib/paging";
import { queueSql, sqlQuery, sqlQueryAndCommit, sqlQueryEach, UNCHANGED_SINCE_READ, type LockedRead, type Statement } from "../lib/sql";

export interface DbMixinOptions {
	/** The service's versioned schema changes, applied at start-up in its own PostgreSQL schema. */
	migrations: Migration[];
	/** The moleculer-db entity of the service, if it has one: a table its migrations created. */
	model?: { name: string; define: ModelAttributes; options?: ModelOptions };
}

/** The Moleculer context a transaction works for: events written in it continue its trace. */
const contexts = new WeakMap<Transaction, Context>();
export function bindContext(tx: Transaction, ctx: Context | undefined): void {
	if (ctx) contexts.set(tx, ctx);
}
export function contextOf(tx: Transaction): Context | undefined {
	return contexts.get(tx);
}

/** Counts a transaction of `service` run again after its reads ahead changed. */
export const readAheadRetried = (service: Service) => () => countMetric(service.broker, "readAheadRetries", { service: service.name });

/** What the mixin adds to a service's `this`. */
export interface DbMethods {
	sequelize: Sequelize;
	prepareDatabase(): Promise<Sequelize>;
	table(name: string): string;
	sql<T extends object>(sql: string, replacements?: Record<string, unknown>, tx?: Transaction): Promise<T[]>;
	sqlAndCommit<T extends object>(sql: string, replacements: Record<string, unknown>, tx: Transaction): Promise<T[]>;
	/** `R` names the rows of each read, e.g. `[OrderRow[], LineRow[]]`. */
	sqlEach<R extends unknown[][] = unknown[][]>(reads: Array<Statement | LockedRead>, tx: Transaction): Promise<R>;
	lockedRead(table: string, where: string, orderBy: string, replacements: Record<string, unknown>, columns?: string): LockedRead;
	/** Whether this node is the only one running this service now (Moleculer's registry). */
	soleNode(): boolean;
	queueSql(sql: string, replacements: Record<string, unknown>, tx: Transaction, onRows?: (rows: unknown[]) => void): void;
	transaction<T>(fn: (tx: Transaction) => Promise<T>, ctx?: Context, opts?: TransactionOptions): Promise<T>;
	paged<T extends object, R>(query: PageQuery, replacements: Record<string, unknown>, paging: { page: number; pageSize: number }, map: (row: T) => R | Promise<R>): Promise<Page<R>>;
}

/** What a list pages over: `SELECT <columns> FROM <table> [WHERE <where>] ORDER BY <orderBy>`. */
export interface PageQuery {
	table: string;
	where?: string;
	orderBy: string;
	columns?: string;
}
export type DbService = Service & DbMethods;

/** moleculer-db's generated CRUD actions: none is part of the contract, so none is published. */
const GENERATED_ACTIONS = ["find", "count", "list", "create", "insert", "get", "update", "remove"];

/**
 * Uses the node's shared Sequelize (one pool per node) instead of opening its own, and defines the
 * model on the table the migrations made instead of letting Sequelize `sync` it.
 */
class SharedSequelizeAdapter extends SequelizeAdapter {
	declare service: DbService & { schema: { model: NonNullable<DbMixinOptions["model"]> } };
	declare db: Sequelize;
	declare model: ModelStatic<Model>;

	override async connect(): Promise<void> {
		this.db = await this.service.prepareDatabase();
		const { name, define, options } = this.service.schema.model;
		this.model = this.db.define(`${this.service.name}.${name}`, define, { tableName: name, ...options, schema: this.service.name });
		(this.service as any).model = this.model;
	}

	/** The pool belongs to the node and is closed when the broker stops. */
	override async disconnect(): Promise<void> {}
}

/**
 * Gives a service its tables: the migrations in its own schema (named after the service, so each
 * service owns its tables), raw SQL, transactions and paging, and, with a model, a moleculer-db
 * adapter whose generated actions are disabled.
 */
export function DbMixin(opts: DbMixinOptions): Partial<ServiceSchema> {
	const schema: Partial<ServiceSchema> & Record<string, unknown> = {
		methods: {
			prepareDatabase(this: DbService & { dbReady?: Promise<Sequelize> }): Promise<Sequelize> {
				this.dbReady ??= (async () => {
					const db = await runtimeOf(this.broker).database();
					const applied = await runMigrations(db.sequelize, this.name, [UNCHANGED_SINCE_READ, ...opts.migrations]);
					if (applied.length > 0) this.logger.info(`Applied migrations: ${applied.join(", ")}`);
					this.sequelize = db.sequelize;
					return db.sequelize;
				})().catch(err => {
					this.dbReady = undefined; // moleculer-db retries connect(); let it really try again
					throw err;
				});
				return this.dbReady;
			},
			/** `"service".name`: a fully qualified table of this service, for raw SQL. */
			table(this: DbService, name: string): string {
				return `${quoteIdent(this.name)}.${quoteIdent(name)}`;
			},
			/** Raw SQL with named replacements, rows as objects (RETURNING rows for writes). */
			sql<T extends object>(this: DbService, sql: string, replacements: Record<string, unknown> = {}, tx?: Transaction): Promise<T[]> {
				return sqlQuery<T>(this.sequelize, sql, replacements, tx);
			},
			/** `tx`'s last statement, sent with its COMMIT (no message of its own): its rows. */
			sqlAndCommit<T extends object>(this: DbService, sql: string, replacements: Record<string, unknown>, tx: Transaction): Promise<T[]> {
				return sqlQueryAndCommit<T>(this.sequelize, sql, replacements, tx);
			},
			/** Reads in `tx` that do not depend on each other's results, in one message: the rows of each (lib/sql sqlQueryEach). */
			sqlEach<R extends unknown[][]>(this: DbService, reads: Array<Statement | LockedRead>, tx: Transaction): Promise<R> {
				return sqlQueryEach(this.sequelize, reads, tx) as Promise<R>;
			},
			/** Rows of this service's `table` to decide writes from, locked until the commit (`orderBy` unique; lib/sql LockedRead). */
			lockedRead(this: DbService, table: string, where: string, orderBy: string, replacements: Record<string, unknown>, columns = "*"): LockedRead {
				return { schema: this.name, table: this.table(table), where, orderBy, columns, replacements };
			},
			/**
			 * Whether this node is the only one running this service now: then every write of the
			 * service's shared rows (products, wallets) is its own, and rows it remembers writing
			 * (lib/known-rows.ts) stay current.
			 */
			soleNode(this: DbService): boolean {
				const services = this.broker.registry.getServiceList({ onlyAvailable: true }) as Array<{ name: string }>;
				return services.filter(s => s.name === this.name).length <= 1;
			},
			/**
			 * A write in `tx` whose result nobody waits for: sent with the transaction's next statement or
			 * its COMMIT, not as a message of its own (embedded, a transaction holds PGlite between its
			 * messages); `onRows` gets its rows (a RETURNING) then.
			 */
			queueSql(this: DbService, sql: string, replacements: Record<string, unknown>, tx: Transaction, onRows?: (rows: unknown[]) => void): void {
				queueSql(this.sequelize, tx, sql, replacements, undefined, onRows);
			},
			/** A managed transaction (commits when `fn` resolves, rolls back when it throws), for `ctx`'s request. */
			transaction<T>(this: DbService, fn: (tx: Transaction) => Promise<T>, ctx?: Context, opts?: TransactionOptions): Promise<T> {
				return inTransaction(
					this.sequelize,
					tx => {
						bindContext(tx, ctx);
						return fn(tx);
					},
					{ onRetry: readAheadRetried(this), ...opts },
				);
			},
			/** One page of a list (SPEC section 2's paging) and the count of all its rows, each row mapped by `map`. */
			async paged<T extends object, R>(this: DbService, query: PageQuery, replacements: Record<string, unknown>, { page, pageSize }: { page: number; pageSize: number }, map: (row: T) => R | Promise<R>) {
				const where = query.where ? ` WHERE ${query.where}` : "";
				const [{ n }] = await this.sql<{ n: string }>(`SELECT count(*) AS n FROM ${query.table}${where}`, replacements);
				const rows = await this.sql<T>(`SELECT ${query.columns ?? "*"} FROM ${query.table}${where} ORDER BY ${query.orderBy} LIMIT :limit OFFSET :offset`, {
					...replacements,
					limit: pageSize,
					offset: offsetOf(page, pageSize),
				});
				return pageOf(await Promise.all(rows.map(map)), Number(n), page, pageSize);
			},
		},
		async started() {
			await this.prepareDatabase();
		},
	};
	if (opts.model) {
		schema.mixins = [MoleculerDbService as unknown as Partial<ServiceSchema>];
		schema.adapter = new (SharedSequelizeAdapter as any)();
		schema.model = opts.model;
		schema.actions = Object.fromEntries(GENERATED_ACTIONS.map(a => [a, false]));
	}
	return schema;
}
