/**
 * The embedded default with no servers at all: one node, every service, PGlite on disk.
 */
import { QueryTypes } from "sequelize";
import { runtimeOf } from "../../lib/runtime";
import { runMigrations } from "../../lib/migrations";
import { createEnvelope } from "../../lib/events/envelope";
import { EVENT_TABLE_MIGRATIONS } from "../../lib/events/tables";
import { OutboxRelay, writeToOutbox } from "../../lib/events/relay";
import type { Logger } from "moleculer";
import { deadLettersOf, PROBE_EVENT, ProbeConsumer, ProbeProducer } from "../fixtures/probe.services";
import { eventually, startTestNode, tempDir, type TestNode } from "../../scripts/harness/node";
import { watchStatements } from "../../scripts/harness/statements";
import { queueSql, rowsOfEach, sqlQuery, sqlQueryAndCommit, sqlQueryEach, UNCHANGED_SINCE_READ, WITH_ROW_VERSION, type LockedRead } from "../../lib/sql";
import { statSync } from "node:fs";
import { beforeCommit, inTransaction, type Transaction } from "../../lib/transactions";

const data = tempDir();
let node: TestNode;

const call = <T = any>(action: string, params: Record<string, any> = {}) => node.broker.call<T, Record<string, any>>(action, params);
const effects = () => call<Array<{ eventId: string; note: string }>>("probe-consumer.effects");
const quiet = { info() {}, warn() {}, error() {}, debug() {} } as unknown as Logger;
/** Whether event `id`'s row in `outbox` (a quoted schema.table) is marked published. */
async function isPublished(outbox: string, id: string): Promise<boolean> {
	const { sequelize } = await runtimeOf(node.broker).database();
	return (await sqlQuery<{ p: boolean }>(sequelize, `SELECT published_at IS NOT NULL AS p FROM ${outbox} WHERE event_id = :id`, { id }))[0].p;
}

/** The node under test, on `data` (started again on the same directory by the restart tests). */
const startNode = () => startTestNode({ DATA_DIR: data.dir, EMBEDDED_VACUUM_MS: "300", EMBEDDED_CHECKPOINT_MB: "1" }, [ProbeProducer, ProbeConsumer]);

beforeAll(async () => {
	node = await startNode();
});

afterAll(async () => {
	await node?.stop();
	data.remove();
});

/** The statements of each message this process sends while `fn` runs (whitespace collapsed, cut at `width`), and its result. */
async function messagesWhile<T>(fn: () => Promise<T>, width = 30): Promise<{ result: T; messages: string[][] }> {
	const messages: string[][] = [];
	const stop = watchStatements((sql, opensMessage) => {
		if (opensMessage) messages.push([]);
		messages[messages.length - 1].push(sql.replace(/\s+/g, " ").slice(0, width));
	});
	try {
		return { result: await fn(), messages };
	} finally {
		stop();
	}
}

describe("embedded node", () => {
	it("answers /health/live and /health/ready with the database checked", async () => {
		const live = await fetch(`${node.url}/health/live`);
		expect(live.status).toBe(200);
		expect(await live.json()).toEqual({ status: "ok" });
		const ready = await fetch(`${node.url}/health/ready`);
		expect(ready.status).toBe(200);
		expect(await ready.json()).toEqual({ status: "ok", checks: { database: "ok" } });
	});

	it("runs without any server configured", () => {
		const { config } = runtimeOf(node.broker);
		expect([config.transporter, config.databaseUrl, config.redisUrl, config.kafkaBrokers]).toEqual([undefined, undefined, undefined, undefined]);
		expect(node.broker.transit).toBeUndefined();
	});

	it("serves its database from a thread of its own on a Unix socket only this user can reach, not a TCP port", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		const { host } = sequelize.config;
		expect(host).toMatch(/^\//); // a socket's directory: `pg` finds <host>/.s.PGSQL.5432 there
		expect(statSync(host!).mode & 0o777).toBe(0o700);
		expect(statSync(`${host}/.s.PGSQL.5432`).isSocket()).toBe(true);
		// PostgreSQL busy for 300 ms does not stop this thread's event loop: PGlite runs on another.
		let ticks = 0;
		const timer = setInterval(() => ticks++, 10);
		try {
			await sqlQuery(sequelize, "SELECT pg_sleep(0.3)");
		} finally {
			clearInterval(timer);
		}
		expect(ticks).toBeGreaterThanOrEqual(5);
	});

	it("vacuums its database, which runs no autovacuum, so that updated rows leave no dead rows behind", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		await sqlQuery(sequelize, "CREATE SCHEMA IF NOT EXISTS vacprobe; CREATE TABLE vacprobe.t (id int PRIMARY KEY, n int)");
		await sqlQuery(sequelize, "INSERT INTO vacprobe.t SELECT i, 0 FROM generate_series(1, 100) i");
		for (let i = 0; i < 3; i++) await sqlQuery(sequelize, "UPDATE vacprobe.t SET n = n + 1");
		// This session's counters are reported at its next transaction's end, not at once.
		const stats = async () => {
			await sqlQuery(sequelize, "SELECT pg_stat_force_next_flush()");
			return sqlQuery<{ dead: number; vacuumed: boolean }>(sequelize, "SELECT n_dead_tup::int AS dead, last_vacuum IS NOT NULL AS vacuumed FROM pg_stat_user_tables WHERE schemaname = 'vacprobe'");
		};
		await eventually("the table vacuumed", async () => {
			const [row] = await stats();
			return row.vacuumed && row.dead === 0;
		});
	});

	it("takes a checkpoint once EMBEDDED_CHECKPOINT_MB of WAL was written, which PGlite, with no checkpointer, never took by itself", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		await sqlQuery(sequelize, "CREATE SCHEMA IF NOT EXISTS walprobe; CREATE TABLE walprobe.t (id int PRIMARY KEY, pad text)");
		await sqlQuery(sequelize, "INSERT INTO walprobe.t SELECT i, repeat('x', 500) FROM generate_series(1, 5000) i"); // about 3 MB of WAL
		const [{ written }] = await sqlQuery<{ written: string }>(sequelize, "SELECT pg_current_wal_lsn()::text AS written");
		// The checkpoint's redo point moves past the insert: a checkpoint started after it.
		await eventually("a checkpoint after the insert", async () => {
			const [row] = await sqlQuery<{ after: boolean }>(sequelize, "SELECT redo_lsn >= CAST(:written AS pg_lsn) AS after FROM pg_control_checkpoint()", { written });
			return row.after;
		});
	});

	it("refreshes the planner's statistics from a small sample, so that ANALYZE holds the one session only briefly", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		await sqlQuery(sequelize, "CREATE SCHEMA IF NOT EXISTS anaprobe; CREATE TABLE anaprobe.t (id int PRIMARY KEY)");
		await sqlQuery(sequelize, "INSERT INTO anaprobe.t SELECT i FROM generate_series(1, 1000) i");
		// A histogram of 1,000 distinct values has as many buckets as the statistics target allows (100 by default).
		const [stats] = await eventually("the table analyzed", async () => {
			const rows = await sqlQuery<{ bounds: number }>(sequelize, "SELECT array_length(histogram_bounds, 1) AS bounds FROM pg_stats WHERE schemaname = 'anaprobe' AND attname = 'id'");
			return rows.length > 0 ? rows : undefined;
		});
		expect(stats.bounds).toBe(11);
	});

	it("keeps each service's tables in its own schema", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		const rows = await sequelize.query<{ table_schema: string; table_name: string }>(
			"SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ('audit', 'probe-consumer') ORDER BY 1, 2",
			{ type: QueryTypes.SELECT },
		);
		expect(rows.map(r => `${r.table_schema}.${r.table_name}`)).toEqual([
			"audit.audit_log",
			"audit.dead_letters",
			"audit.outbox",
			"audit.processed_events",
			"audit.schema_migrations",
			"probe-consumer.critical",
			"probe-consumer.dead_letters",
			"probe-consumer.effects",
			"probe-consumer.outbox",
			"probe-consumer.processed_events",
			"probe-consumer.schema_migrations",
		]);
	});

	it("runs migrations a second time without harm", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		const migrations = [{ id: "again-001", sql: "CREATE TABLE t (id int PRIMARY KEY)" }];
		expect(await runMigrations(sequelize, "again", migrations)).toEqual(["again-001"]);
		expect(await runMigrations(sequelize, "again", migrations)).toEqual([]);
		// Concurrent runs (as from nodes starting together) apply it once between them.
		const more = [...migrations, { id: "again-002", sql: "ALTER TABLE t ADD COLUMN note text" }];
		const results = await Promise.all([runMigrations(sequelize, "again", more), runMigrations(sequelize, "again", more)]);
		expect(results.flat()).toEqual(["again-002"]);
		const applied = await sequelize.query<{ id: string }>('SELECT id FROM "again".schema_migrations ORDER BY id', { type: QueryTypes.SELECT });
		expect(applied.map(r => r.id)).toEqual(["again-001", "again-002"]);
	});

	it("commits a transaction's body, then its before-commit work, and runs its after-commit work only once committed; a throw rolls all of it back", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		await runMigrations(sequelize, "txprobe", [{ id: "txprobe-001", sql: "CREATE TABLE t (note text)" }]);
		const notes = async () => (await sqlQuery<{ note: string }>(sequelize, 'SELECT note FROM "txprobe".t ORDER BY note')).map(r => r.note);
		const steps: string[] = [];
		const write = (tx: Transaction, note: string) => sqlQuery(sequelize, 'INSERT INTO "txprobe".t (note) VALUES (:note)', { note }, tx);
		await inTransaction(sequelize, async tx => {
			await write(tx, "body");
			beforeCommit(tx, async () => void (await write(tx, "finisher")), "flush");
			tx.afterCommit(async () => void steps.push(`after commit: ${(await notes()).join(",")}`));
		});
		expect(steps).toEqual(["after commit: body,finisher"]);
		const failed = inTransaction(sequelize, async tx => {
			await write(tx, "lost");
			beforeCommit(tx, async () => {
				await write(tx, "lost too");
				throw new Error("finisher failed");
			});
			tx.afterCommit(() => steps.push("never"));
		});
		await expect(failed).rejects.toThrow("finisher failed");
		expect(await notes()).toEqual(["body", "finisher"]);
		expect(steps).toHaveLength(1);
		// No pooled client is left inside a transaction (there, now() would be the transaction's start).
		const clients = await Promise.all(Array.from({ length: 12 }, () => sqlQuery<{ alone: boolean }>(sequelize, "SELECT now() = statement_timestamp() AS alone")));
		expect(clients.flat().every(r => r.alone)).toBe(true);
	});

	it("sends BEGIN with a transaction's first statement and a queued write with its COMMIT; a failing queued write rolls the transaction back", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		const { messages } = await messagesWhile(async () => {
			await inTransaction(sequelize, async tx => {
				await sqlQuery(sequelize, 'INSERT INTO "txprobe".t (note) VALUES (:note)', { note: "first" }, tx);
				queueSql(sequelize, tx, 'INSERT INTO "txprobe".t (note) VALUES (:note)', { note: "queued" });
			});
			// A queued write that fails fails the commit, and the transaction rolls back whole.
			const failed = inTransaction(sequelize, async tx => {
				await sqlQuery(sequelize, 'INSERT INTO "txprobe".t (note) VALUES (:note)', { note: "rolled back" }, tx);
				queueSql(sequelize, tx, 'INSERT INTO "txprobe".t (note) VALUES (:note::int::text)', { note: "not a number" });
			});
			await expect(failed).rejects.toThrow(/invalid input syntax for type integer/);
		});
		// The relays' messages go on meanwhile: only this test's count.
		expect(messages.filter(m => m.some(sql => sql.includes("txprobe")))).toEqual([
			["BEGIN", `INSERT INTO "txprobe".t (note)`],
			[`INSERT INTO "txprobe".t (note)`, "COMMIT"],
			["BEGIN", `INSERT INTO "txprobe".t (note)`],
			[`INSERT INTO "txprobe".t (note)`, "COMMIT"],
		]);
		const notes = await sqlQuery<{ note: string }>(sequelize, 'SELECT note FROM "txprobe".t WHERE note IN (:a, :b, :c)', { a: "first", b: "queued", c: "rolled back" });
		expect(notes.map(r => r.note).sort()).toEqual(["first", "queued"]);
	});

	it("sends statements that do not depend on each other in one message and answers the rows of each", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		const { result, messages } = await messagesWhile(
			() =>
				inTransaction(sequelize, async tx => {
					queueSql(sequelize, tx, 'INSERT INTO "txprobe".t (note) VALUES (:note)', { note: "txprobe-each" });
					return sqlQueryEach(
						sequelize,
						[
							['SELECT note FROM "txprobe".t WHERE note = :note', { note: "txprobe-each" }],
							["SELECT :a::int AS a, :b::int AS b /* txprobe-each */", { a: 1, b: 2 }],
						],
						tx,
					);
				}),
			25,
		);
		expect(result).toEqual([[{ note: "txprobe-each" }], [{ a: 1, b: 2 }]]);
		// BEGIN, the queued insert and both reads in one message (the COMMIT follows in its own).
		expect(messages.filter(m => m.some(sql => sql.includes("txprobe")))).toEqual([["BEGIN", `INSERT INTO "txprobe".t (`, `SELECT note FROM "txprobe`, "SELECT 1::int AS a, 2::in"]]);
		// Counted from the message's end: a text that carries its PREPARE is two statements.
		const answer = (n: number) => ({ rows: [n] });
		expect(rowsOfEach([answer(0), answer(1), answer(2), answer(3)], ["PREPARE s AS SELECT 1;\nEXECUTE s", "SELECT 3"])).toEqual([[2], [3]]);
		expect(rowsOfEach(answer(7), ["SELECT 7"])).toEqual([[7]]);
	});

	it("reads a transaction's locked rows ahead of it and sends their guard, its writes and its COMMIT in one message; rows changed in between run it again, and its last try locks as it reads", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		await runMigrations(sequelize, "occprobe", [UNCHANGED_SINCE_READ, { id: "occprobe-001", sql: "CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL); INSERT INTO c VALUES (1, 0), (2, 0)" }]);
		const read: LockedRead = { schema: "occprobe", table: '"occprobe".c', where: "id = ANY(ARRAY[:ids]::int[])", orderBy: "id", columns: "id, n", replacements: { ids: [1, 2] } };
		const counter = async () => (await sqlQuery<{ n: number }>(sequelize, 'SELECT n FROM "occprobe".c WHERE id = 1'))[0].n;
		// An increment decided from what it read: an update lost in between would show as a missing increment.
		let retries = 0;
		const increment = (meddle: (attempt: number, ahead: boolean) => Promise<unknown>) => {
			let attempt = 0;
			return inTransaction(
				sequelize,
				async tx => {
					const ahead = tx.mayReadAhead;
					const [rows] = (await sqlQueryEach(sequelize, [read], tx)) as [Array<{ id: number; n: number }>];
					await meddle(++attempt, ahead);
					queueSql(sequelize, tx, 'UPDATE "occprobe".c SET n = :n WHERE id = 1', { n: rows[0].n + 1 });
					return { attempt, ahead, rows };
				},
				{ readAhead: true, onRetry: () => retries++ },
			);
		};
		const { result, messages } = await messagesWhile(() => increment(async () => {}), 200);
		// Alone: the read before BEGIN, unlocked; then one message that locks, checks, writes and commits.
		expect(result).toEqual({ attempt: 1, ahead: true, rows: [{ id: 1, n: 0 }, { id: 2, n: 0 }] });
		// (A statement's first use also prepares it, in a message of its own: not counted here.)
		const own = messages.filter(m => m.some(sql => sql.includes("occprobe")) && !m[0].startsWith("PREPARE"));
		expect(own.map(m => m.map(sql => sql.slice(0, 25)))).toEqual([
			["SELECT ctid::text || '/' "],
			["BEGIN", 'SELECT "occprobe".unchang', 'UPDATE "occprobe".c SET n', "COMMIT"],
		]);
		// Changed between its read and its commit: the guard fails that try and the next reads again.
		const meddled = await increment(attempt => (attempt === 1 ? sqlQuery(sequelize, 'UPDATE "occprobe".c SET n = n + 10 WHERE id = 1') : Promise.resolve()));
		expect(meddled).toMatchObject({ attempt: 2, ahead: true, rows: [{ n: 11 }, { n: 0 }] });
		expect(await counter()).toBe(12);
		expect(retries).toBe(1); // what checkout_read_ahead_retries_total counts
		// Changed every time it reads ahead: it ends locking as it reads, in the transaction.
		const contended = await increment((_attempt, ahead) => (ahead ? sqlQuery(sequelize, 'UPDATE "occprobe".c SET n = n + 100 WHERE id = 1') : Promise.resolve()));
		expect(contended).toMatchObject({ attempt: 3, ahead: false, rows: [{ n: 212 }, { n: 0 }] });
		expect(await counter()).toBe(213);
		expect(retries).toBe(3);
	});

	it("takes a locked read's rows from the write that returned them with their versions: no read, the same guard, and a read again when they changed", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		await runMigrations(sequelize, "knownprobe", [UNCHANGED_SINCE_READ, { id: "knownprobe-001", sql: "CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL)" }]);
		const read: LockedRead = { schema: "knownprobe", table: '"knownprobe".c', where: "id = ANY(ARRAY[:ids]::int[])", orderBy: "id", columns: "id, n", replacements: { ids: [1, 2] } };
		const written = () => sqlQuery<{ id: number; n: number }>(sequelize, `INSERT INTO "knownprobe".c VALUES (1, 0), (2, 0) ON CONFLICT (id) DO UPDATE SET n = 0 RETURNING *, ${WITH_ROW_VERSION}`);
		// Increments decided from the rows given (`known`) on the first try, from a read on the next.
		const increment = (known: object[], meddle: () => Promise<unknown> = async () => undefined) => {
			let attempt = 0;
			return inTransaction(
				sequelize,
				async tx => {
					const [rows] = (await sqlQueryEach(sequelize, [{ ...read, known: ++attempt === 1 ? known : undefined }], tx)) as [Array<{ id: number; n: number }>];
					if (attempt === 1) await meddle();
					queueSql(sequelize, tx, 'UPDATE "knownprobe".c SET n = :n WHERE id = 1', { n: rows[0].n + 1 });
					return { attempt, rows };
				},
				{ readAhead: true },
			);
		};
		const { result, messages } = await messagesWhile(async () => increment(await written()), 200);
		expect(result).toEqual({ attempt: 1, rows: [{ id: 1, n: 0 }, { id: 2, n: 0 }] }); // the version column left out
		const own = messages.filter(m => m.some(sql => sql.includes("knownprobe")) && !m[0].startsWith("PREPARE") && !m[0].startsWith("INSERT"));
		expect(own.map(m => m.map(sql => sql.slice(0, 26)))).toEqual([["BEGIN", 'SELECT "knownprobe".unchan', 'UPDATE "knownprobe".c SET ', "COMMIT"]]);
		// Changed after the write that returned them: the guard fails the first try, the second reads.
		const meddled = await increment(await written(), () => sqlQuery(sequelize, 'UPDATE "knownprobe".c SET n = n + 10 WHERE id = 1'));
		expect(meddled).toEqual({ attempt: 2, rows: [{ id: 1, n: 10 }, { id: 2, n: 0 }] });
		expect((await sqlQuery<{ n: number }>(sequelize, 'SELECT n FROM "knownprobe".c WHERE id = 1'))[0].n).toBe(11);
	});

	it("takes known rows within a transaction that wrote already (a batch's later run): a guard, no read; the last try reads them locked", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		await runMigrations(sequelize, "midprobe", [UNCHANGED_SINCE_READ, { id: "midprobe-001", sql: "CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL); CREATE TABLE log (note text NOT NULL)" }]);
		const read: LockedRead = { schema: "midprobe", table: '"midprobe".c', where: "id = ANY(ARRAY[:ids]::int[])", orderBy: "id", columns: "id, n", replacements: { ids: [1] } };
		const written = () => sqlQuery<{ id: number; n: number }>(sequelize, `INSERT INTO "midprobe".c VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET n = 0 RETURNING *, ${WITH_ROW_VERSION}`);
		// A write, then an increment decided from the rows given on every try; `meddle` changes them behind its back.
		const increment = (known: object[], meddle: (attempt: number) => Promise<unknown> = async () => undefined) => {
			let attempt = 0;
			return inTransaction(
				sequelize,
				async tx => {
					queueSql(sequelize, tx, 'INSERT INTO "midprobe".log (note) VALUES (:note)', { note: `try ${++attempt}` });
					const [rows] = (await sqlQueryEach(sequelize, [{ ...read, known }], tx)) as [Array<{ id: number; n: number }>];
					await meddle(attempt);
					queueSql(sequelize, tx, 'UPDATE "midprobe".c SET n = :n WHERE id = 1', { n: rows[0].n + 1 });
					return { attempt, optimistic: tx.optimistic, rows };
				},
				{ readAhead: true },
			);
		};
		const { result, messages } = await messagesWhile(async () => increment(await written()), 200);
		expect(result).toEqual({ attempt: 1, optimistic: true, rows: [{ id: 1, n: 0 }] });
		const own = messages.filter(m => m.some(sql => sql.includes("midprobe")) && !m[0].startsWith("PREPARE") && !m[0].startsWith("INSERT INTO \"midprobe\".c"));
		expect(own.map(m => m.map(sql => sql.slice(0, 26)))).toEqual([["BEGIN", 'INSERT INTO "midprobe".log', 'SELECT "midprobe".unchange', 'UPDATE "midprobe".c SET n ', "COMMIT"]]);
		// Changed on every optimistic try: the last try ignores what it was given and reads, locked.
		const contended = await increment(await written(), attempt => (attempt < 3 ? sqlQuery(sequelize, 'UPDATE "midprobe".c SET n = n + 10 WHERE id = 1') : Promise.resolve()));
		expect(contended).toEqual({ attempt: 3, optimistic: false, rows: [{ id: 1, n: 20 }] });
		expect((await sqlQuery<{ n: number }>(sequelize, 'SELECT n FROM "midprobe".c WHERE id = 1'))[0].n).toBe(21);
		expect(await sqlQuery<{ note: string }>(sequelize, 'SELECT note FROM "midprobe".log ORDER BY note')).toEqual([{ note: "try 1" }, { note: "try 3" }]);
	});

	it("sends a transaction's last statement with its finishers' writes and its COMMIT, and answers its rows", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		const { result, messages } = await messagesWhile(
			() =>
				inTransaction(sequelize, async tx => {
					beforeCommit(tx, async () => queueSql(sequelize, tx, 'INSERT INTO "txprobe".t (note) VALUES (:note)', { note: "txprobe-finisher" }), "flush");
					return sqlQueryAndCommit(sequelize, 'INSERT INTO "txprobe".t (note) VALUES (:note) RETURNING note', { note: "txprobe-last" }, tx);
				}),
			25,
		);
		expect(result).toEqual([{ note: "txprobe-last" }]);
		expect(messages.filter(m => m.some(sql => sql.includes("txprobe")))).toEqual([["BEGIN", 'INSERT INTO "txprobe".t (', 'INSERT INTO "txprobe".t (', "COMMIT"]]);
		const notes = await sqlQuery<{ note: string }>(sequelize, 'SELECT note FROM "txprobe".t WHERE note IN (:a, :b) ORDER BY note', { a: "txprobe-finisher", b: "txprobe-last" });
		expect(notes.map(r => r.note)).toEqual(["txprobe-finisher", "txprobe-last"]);
	});

	it("runs a statement used again as a prepared statement, with the same answers", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		const read = (notes: string[]) => sqlQuery<{ note: string }>(sequelize, 'SELECT note FROM "txprobe".t WHERE note = ANY(ARRAY[:notes]::text[]) ORDER BY note', { notes });
		const first = await read(["body", "finisher", "it's"]);
		const prepared = await eventually("the statement prepared", async () => {
			// This query is prepared too once used, and its own text holds the pattern: it does not count.
			const [row] = await sqlQuery<{ n: number }>(
				sequelize,
				`SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement LIKE '%note = ANY($1::text[])%' AND statement NOT LIKE '%pg_prepared_statements%'`,
			);
			return row.n === 1;
		});
		expect(prepared).toBe(true);
		expect(await read(["body", "finisher", "it's"])).toEqual(first);
		expect(first.map(r => r.note)).toEqual(["body", "finisher"]);
		expect(await read([])).toEqual([]);
	});

	it("refuses a migration list that uses an id twice", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		const twice = [
			{ id: "x", sql: "SELECT 1" },
			{ id: "x", sql: "SELECT 2" },
		];
		await expect(runMigrations(sequelize, "again", twice)).rejects.toThrow(/used twice/);
	});

	it("delivers events written to the outbox to their consumer after commit", async () => {
		const ids = await call<string[]>("probe-producer.emit", { count: 3, data: { note: "hello" } });
		const seen = await eventually("three effects", async () => {
			const rows = (await effects()).filter(r => ids.includes(r.eventId));
			return rows.length === 3 && rows;
		});
		expect(seen.map(r => r.note)).toEqual(["hello", "hello", "hello"]);
		await eventually("an empty outbox", async () => (await call<number>("probe-producer.backlog")) === 0);
	});

	it("does not publish the events of a transaction that rolled back", async () => {
		const svc = node.broker.getLocalService("probe-producer") as any;
		await expect(
			svc.transaction(async (tx: any) => {
				await svc.publishEvent(tx, PROBE_EVENT, { note: "rolled-back" });
				throw new Error("abort");
			}),
		).rejects.toThrow("abort");
		await call("probe-producer.emit", { data: { note: "after-rollback" } });
		await eventually("the later event", async () => (await effects()).some(r => r.note === "after-rollback"));
		expect((await effects()).some(r => r.note === "rolled-back")).toBe(false);
	});

	it("gives a redelivered event no second effect", async () => {
		const event = createEnvelope(PROBE_EVENT, { note: "twice" }, { service: "test", nodeID: "t" });
		await node.broker.emit(PROBE_EVENT, event);
		await node.broker.emit(PROBE_EVENT, event);
		await Promise.all([node.broker.emit(PROBE_EVENT, event), node.broker.emit(PROBE_EVENT, event)]);
		await eventually("the effect", async () => (await effects()).some(r => r.eventId === event.eventId));
		expect((await effects()).filter(r => r.eventId === event.eventId)).toHaveLength(1);
	});

	it("retries a failing handler and applies its effect once it succeeds", async () => {
		const [id] = await call<string[]>("probe-producer.emit", { data: { note: "flaky", failTimes: 2 } });
		await eventually("the effect after two failures", async () => (await effects()).some(r => r.eventId === id));
		expect((await effects()).filter(r => r.eventId === id)).toHaveLength(1);
	});

	it("dead-letters an event that keeps failing, and the events behind it still flow", async () => {
		const [poison] = await call<string[]>("probe-producer.emit", { data: { note: "poison", poison: true } });
		const [next] = await call<string[]>("probe-producer.emit", { data: { note: "behind" } });
		await eventually("the event behind the poisoned one", async () => (await effects()).some(r => r.eventId === next));
		const letters = await eventually("a dead letter", async () => {
			const rows = (await deadLettersOf(call)).filter(r => r.eventId === poison);
			return rows.length > 0 && rows;
		});
		expect(letters).toEqual([{ eventId: poison, eventName: PROBE_EVENT, error: "poisoned event", attempts: 3 }]);
		expect((await effects()).some(r => r.eventId === poison)).toBe(false);
	});

	it("applies a batch as one transaction: each event once and in order, a duplicate skipped, a poison dead-lettered alone", async () => {
		const consumer = node.broker.getLocalService("probe-consumer") as any;
		const producer = { service: "probe-producer", nodeID: node.broker.nodeID };
		const ping = (note: string, extra: Record<string, unknown> = {}) => createEnvelope(PROBE_EVENT, { note, ...extra }, producer);
		const [a, poison, b, c] = [ping("batch-a"), ping("batch-poison", { poison: true }), ping("batch-b"), ping("batch-c")];
		const ctx = () => node.broker.ContextFactory.create(node.broker);
		// The consumer's inbox statements (other services' background work shares the pool, not this table).
		let inboxWrites = 0;
		const stop = watchStatements(sql => {
			if (sql.includes(`"probe-consumer".processed_events`) && sql.includes("INSERT")) inboxWrites++;
		});
		try {
			// a arrives twice in the batch; a and b again in a later batch (a redelivery).
			await consumer.batches.push([a, b, a, c].map(event => ({ event, ctx: ctx() })));
			expect(inboxWrites).toBe(1); // one statement records the whole batch
			await consumer.batches.push([a, poison, b, c].map(event => ({ event, ctx: ctx() })));
		} finally {
			stop();
		}
		const applied = (await effects()).filter(r => r.note.startsWith("batch-")).map(r => r.note);
		expect(applied).toEqual(["batch-a", "batch-b", "batch-c"]);
		expect((await deadLettersOf(call)).filter(r => r.eventId === poison.eventId)).toEqual([{ eventId: poison.eventId, eventName: PROBE_EVENT, error: "poisoned event", attempts: 3 }]);
	});

	it("sends a batch's inbox records with its first statement, and applies a batch holding a redelivered event again without it", async () => {
		const consumer = node.broker.getLocalService("probe-consumer") as any;
		const producer = { service: "probe-producer", nodeID: node.broker.nodeID };
		const [d, e, f] = ["opt-d", "opt-e", "opt-f"].map(note => createEnvelope(PROBE_EVENT, { note }, producer));
		const ctx = () => node.broker.ContextFactory.create(node.broker);
		const { messages } = await messagesWhile(async () => {
			await consumer.batches.push([d, e].map(event => ({ event, ctx: ctx() })));
			// d again with a new one: the insert as new fails on d, and the batch runs again with d skipped.
			await consumer.batches.push([d, f].map(event => ({ event, ctx: ctx() })));
		}, 1000);
		const inbox = `INSERT INTO "probe-consumer".processed_events`;
		const consumerMessages = messages.filter(m => m.some(sql => sql.includes(`"probe-consumer"`)));
		expect(consumerMessages[0].map(sql => sql.slice(0, 30))).toEqual(["BEGIN", inbox.slice(0, 30), `INSERT INTO "probe-consumer"."effects" (event_id`.slice(0, 30)]);
		// The records written first (ON CONFLICT DO NOTHING) only for the batch that held d again.
		const careful = consumerMessages.flat().filter(sql => sql.startsWith(inbox) && sql.includes("ON CONFLICT"));
		expect(careful).toHaveLength(1);
		const applied = (await effects()).filter(r => r.note.startsWith("opt-")).map(r => r.note);
		expect(applied).toEqual(["opt-d", "opt-e", "opt-f"]);
	});

	it("replays a dead letter once its cause is gone: processed once, and not replayable twice", async () => {
		// Fails three times, which is every try of one delivery; the replay's first try succeeds.
		const [id] = await call<string[]>("probe-producer.emit", { data: { note: "late-success", failTimes: 3 } });
		const letter = await eventually("the dead letter", async () => {
			const rows = (await deadLettersOf(call)).filter(r => r.eventId === id);
			return rows.length > 0 && rows[0];
		});
		expect(letter.attempts).toBe(3);
		const { sequelize } = await runtimeOf(node.broker).database();
		const [[row]] = (await sequelize.query(`SELECT id FROM "probe-consumer".dead_letters WHERE event_id = :id`, { replacements: { id } })) as [Array<{ id: string }>, unknown];
		expect(await call("probe-consumer.replayDeadLetter", { id: Number(row.id) })).toEqual({ outcome: "processed" });
		expect((await effects()).filter(r => r.eventId === id)).toHaveLength(1);
		await expect(call("probe-consumer.replayDeadLetter", { id: Number(row.id) })).rejects.toMatchObject({ code: 422, type: "NOT_REPLAYABLE" });
		await expect(call("probe-consumer.replayDeadLetter", { id: 999999 })).rejects.toMatchObject({ code: 404 });
	});

	it("dead-letters what is not a domain event instead of failing on it", async () => {
		await node.broker.emit(PROBE_EVENT, { not: "an envelope" });
		await eventually("the malformed event in dead letters", async () =>
			(await deadLettersOf(call)).some(r => r.eventId === null && r.error === "not a valid domain event"),
		);
	});

	it("on the bus, marks a batch handed over with one statement of its own and published once this node's consumers handled it; handed over and never handled (a killed node), it is handed over again on the next start", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		const svc = node.broker.getLocalService("probe-producer") as any;
		const stateOf = async (table: string, id: string) =>
			(await sqlQuery<{ handed: boolean; published: boolean }>(sequelize, `SELECT handed_at IS NOT NULL AS handed, published_at IS NOT NULL AS published FROM ${table} WHERE event_id = :id`, { id }))[0];
		// The node's own relay: handled by the probe consumer, then published by a later round.
		const [id] = await call<string[]>("probe-producer.emit", { data: { note: "handed-over" } });
		await eventually("the event handled", async () => (await effects()).some(r => r.eventId === id));
		await eventually("the event published", async () => (await stateOf(svc.table("outbox"), id)).published);

		await runMigrations(sequelize, "busprobe", EVENT_TABLE_MIGRATIONS);
		const event = await inTransaction(sequelize, async tx => writeToOutbox(sequelize, "busprobe", tx, "probe.bus", {}, { service: "busprobe", nodeID: "t" }));
		// Its consumer never finishes: the node is killed while it works.
		const killed = new OutboxRelay(sequelize, "busprobe", { handOver: () => new Promise(() => {}) }, quiet, 60000);
		const { messages } = await messagesWhile(() => killed.drain(), 2000);
		expect(await stateOf('"busprobe".outbox', event.eventId)).toEqual({ handed: true, published: false });
		// The mark needs no transaction: the bus confirms nothing a transaction could roll back.
		const marks = messages.filter(m => m.some(sql => sql.includes('"busprobe".outbox o SET handed_at')) && !m[0].startsWith("PREPARE"));
		expect(marks).toEqual([[expect.stringMatching(/^WITH relay AS/)]]);
		// The next start hands it over again; the round after its hand-over resolved marks it published.
		const handed: string[] = [];
		const restarted = new OutboxRelay(sequelize, "busprobe", { handOver: async events => void handed.push(...events.map(e => e.eventId)) }, quiet, 60000);
		await restarted.drain();
		expect(handed).toEqual([event.eventId]);
		expect(await stateOf('"busprobe".outbox', event.eventId)).toEqual({ handed: true, published: false });
		await restarted.drain();
		expect(await stateOf('"busprobe".outbox', event.eventId)).toEqual({ handed: true, published: true });
		expect(handed).toEqual([event.eventId]); // and not handed over twice by one run
	});

	it("hands a transaction's events over as it commits, with no relay round reading them back, and marks them published on its timer", async () => {
		const svc = node.broker.getLocalService("probe-producer") as any;
		const published = (id: string) => isPublished(svc.table("outbox"), id);
		const emitHandled = async (note: string) => {
			const [emitted] = await call<string[]>("probe-producer.emit", { data: { note } });
			await eventually("the event handled", async () => (await effects()).some(r => r.eventId === emitted), 20000, 5);
			return emitted;
		};
		// Marked published by a live round: the relay has caught up with what was there before.
		const warmUp = await emitHandled("direct-warm-up");
		await eventually("the first event marked published", () => published(warmUp));
		const { result: id, messages } = await messagesWhile(() => emitHandled("direct"), 400);
		// Between the commit and its consumer, no round that locks and marks the outbox (the bus's rounds) or reads it back.
		const rounds = messages.flat().filter(sql => sql.includes('"probe-producer".outbox') && /WITH relay AS|seq > /.test(sql));
		expect(rounds).toEqual([]);
		expect(messages.flat().filter(sql => /^INSERT INTO "probe-producer".outbox/.test(sql))).toHaveLength(1);
		await eventually("the event marked published", () => published(id));
	});

	it("hands over again a row left unpublished with no hand-over holding it (one that failed, a commit whose after-commit work never ran)", async () => {
		const svc = node.broker.getLocalService("probe-producer") as any;
		const event = createEnvelope(PROBE_EVENT, { note: "left-behind" }, { service: "probe-producer", nodeID: "crashed" });
		// Written as a transaction would, but nothing is told of its commit; it has been waiting longer than a live round lets a row wait.
		await svc.sequelize.query(`INSERT INTO ${svc.table("outbox")} (event_id, event_name, aggregate_key, envelope, created_at) VALUES (:id, :name, :id, :envelope, now() - interval '1 minute')`, {
			replacements: { id: event.eventId, name: PROBE_EVENT, envelope: JSON.stringify(event) },
		});
		await eventually("the swept event", async () => (await effects()).some(r => r.eventId === event.eventId));
	});

	it("on its own database, a relay hands over what an earlier run left unpublished in order before it hands over commits as they happen, and again a hand-over that failed", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		await runMigrations(sequelize, "directprobe", EVENT_TABLE_MIGRATIONS);
		const write = (note: string) => inTransaction(sequelize, async tx => writeToOutbox(sequelize, "directprobe", tx, "probe.direct", { note }, { service: "directprobe", nodeID: "t" }));
		const left = [await write("left-1"), await write("left-2")];
		const handed: string[][] = [];
		let failNext = false;
		const relay = new OutboxRelay(sequelize, "directprobe", {
			// A failing hand-over here throws at once, before any promise: the commit that called it stands all the same.
			handOver: events => {
				handed.push(events.map(e => e.data.note));
				if (failNext) {
					failNext = false;
					throw new Error("consumer down");
				}
				return Promise.resolve();
			},
		}, quiet, 20, undefined, "direct");
		relay.start();
		try {
			await eventually("the earlier run's rows handed over", async () => handed.flat().length === 2);
			// Live: the commit's event is handed over by the commit itself.
			failNext = true;
			const failed = await inTransaction(sequelize, async tx => {
				const event = writeToOutbox(sequelize, "directprobe", tx, "probe.direct", { note: "live" }, { service: "directprobe", nodeID: "t" });
				tx.afterCommit(() => relay.committed(event));
				return event;
			});
			expect(handed.flat()).toEqual(["left-1", "left-2", "live"]);
			const published = (id: string) => isPublished('"directprobe".outbox', id);
			await eventually("the handled rows marked published", async () => (await published(left[0].eventId)) && (await published(left[1].eventId)));
			// The failed hand-over is given again once the row has waited long enough.
			expect(await published(failed.eventId)).toBe(false);
			await sqlQuery(sequelize, `UPDATE "directprobe".outbox SET created_at = now() - interval '1 minute' WHERE event_id = :id`, { id: failed.eventId });
			await eventually("the failed hand-over given again and marked", async () => published(failed.eventId));
			expect(handed.flat()).toEqual(["left-1", "left-2", "live", "live"]);
		} finally {
			await relay.stop();
		}
	});

	it("counts no row in a direct relay's backlog once its hand-over resolved, though its mark waits for the next round (or the stop)", async () => {
		const { sequelize } = await runtimeOf(node.broker).database();
		const handed: string[] = [];
		// Its first round ends with the backlog reported; with nothing committed meanwhile, the relay is live (not catching up, which marks at once).
		let firstRound!: () => void;
		const live = new Promise<void>(resolve => (firstRound = resolve));
		const relay = new OutboxRelay(sequelize, "directprobe", { handOver: async events => void handed.push(...events.map(e => e.eventId)) }, quiet, 60000, () => firstRound(), "direct");
		relay.start();
		try {
			await live;
			const event = await inTransaction(sequelize, async tx => {
				const written = writeToOutbox(sequelize, "directprobe", tx, "probe.direct", { note: "waits for its mark" }, { service: "directprobe", nodeID: "t" });
				tx.afterCommit(() => relay.committed(written));
				return written;
			});
			await eventually("the hand-over", async () => handed.includes(event.eventId));
			const published = () => isPublished('"directprobe".outbox', event.eventId);
			expect(await published()).toBe(false);
			expect(await relay.backlog()).toBe(0);
			await relay.stop();
			expect(await published()).toBe(true);
		} finally {
			await relay.stop();
		}
	});

	it("records domain events in the audit log once, as the order timeline", async () => {
		const orderId = "3f1c2b7e-9a40-4c1e-8d65-0a6f6c1f2e11";
		await call("probe-producer.emit", { eventName: "order.created", data: { orderId, total: 1234 } });
		await call("probe-producer.emit", { eventName: "order.confirmed", data: { orderId, total: 1234 } });
		const timeline = await eventually("two timeline entries", async () => {
			const rows = await call<any[]>("audit.timeline", { orderId });
			return rows.length === 2 && rows;
		});
		expect(timeline.map(e => e.eventName)).toEqual(["order.created", "order.confirmed"]);
		expect(timeline[0]).toMatchObject({ producer: { service: "probe-producer", nodeID: node.broker.nodeID }, data: { orderId, total: 1234 } });
		await expect(call("audit.timeline", { orderId: "not-a-uuid" })).rejects.toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
	});

	it("carries any text of an event's data through the outbox, a consumer and the audit log unchanged", async () => {
		const orderId = "5b1d7c3e-2a40-4c1e-8d65-0a6f6c1f2e12";
		const note = `it's "quoted", back\\slash \\" and \\', ünïcödé 🛒, a tab\tand a\nline, '' -- ; $1 E'x'`;
		const [probe] = await call<string[]>("probe-producer.emit", { data: { note } });
		const seen = await eventually("the consumer's effect", async () => (await effects()).find(r => r.eventId === probe));
		expect(seen.note).toBe(note);
		const [id] = await call<string[]>("probe-producer.emit", { eventName: "order.created", data: { orderId, note } });
		const timeline = await eventually("the timeline entry", async () => {
			const rows = await call<any[]>("audit.timeline", { orderId });
			return rows.length === 1 && rows;
		});
		expect(timeline[0]).toMatchObject({ eventId: id, data: { orderId, note } });
	});

	it("writes a batch of events into the audit log with one statement and no inbox record (the log is its own), each once across batches and with its fields", async () => {
		const audit = node.broker.getLocalService("audit") as any;
		const orderId = "7d0c1c52-2f4b-4b0e-9d43-54a3b1f0a001";
		const producer = { service: "probe-producer", nodeID: "n-batch" };
		const events = ["order.created", "stock.reserved", "order.confirmed"].map(name => createEnvelope(name, { orderId }, producer, { trace: { requestID: "req-batch", parentID: "p" } }));
		const { sequelize } = await runtimeOf(node.broker).database();
		const push = async (batch: typeof events) => {
			const sent: string[] = [];
			const stop = watchStatements(sql => {
				// The audit's outbox relay sweeps on a timer of its own: not the batch's.
				if (sql.includes(`"audit".`) && !sql.includes(`"audit".outbox`)) sent.push(sql);
			});
			try {
				await audit.batches.push(batch.map(event => ({ event, ctx: node.broker.ContextFactory.create(node.broker) })));
			} finally {
				stop();
			}
			return sent;
		};
		const [statement, ...others] = await push([...events, events[1]]);
		expect(others).toEqual([]);
		expect(statement).toContain(`INSERT INTO "audit"."audit_log"`);
		expect(statement).not.toContain("processed_events");
		expect(await push(events.slice(1))).toHaveLength(1); // seen before: no second row (below)
		const [rows] = await sequelize.query(`SELECT event_name, correlation_id, producer_node, trace_id, data->>'orderId' AS order_id FROM audit.audit_log WHERE correlation_id = :orderId ORDER BY seq`, { replacements: { orderId } });
		expect(rows).toEqual(["order.created", "stock.reserved", "order.confirmed"].map(event_name => ({ event_name, correlation_id: orderId, producer_node: "n-batch", trace_id: "req-batch", order_id: orderId })));
	});

	it("answers 503 on readiness while shutting down", async () => {
		const runtime = runtimeOf(node.broker);
		runtime.shuttingDown = true;
		try {
			const ready = await fetch(`${node.url}/health/ready`);
			expect(ready.status).toBe(503);
			expect(((await ready.json()) as { checks: Record<string, string> }).checks.shutdown).toBe("node is shutting down");
		} finally {
			runtime.shuttingDown = false;
		}
	});

	it("starts again on the same data directory with its data and nothing to migrate, and hands over again what it had handed over and never seen handled", async () => {
		const before = (await effects()).length;
		// As a node killed while its consumer worked leaves an event: handed over, not published.
		const svc = node.broker.getLocalService("probe-producer") as any;
		const event = createEnvelope(PROBE_EVENT, { note: "handed-over-before-the-kill" }, { service: "probe-producer", nodeID: "killed" });
		await svc.sequelize.query(`INSERT INTO ${svc.table("outbox")} (event_id, event_name, aggregate_key, envelope, handed_at) VALUES (:id, :name, :id, :envelope, now())`, {
			replacements: { id: event.eventId, name: PROBE_EVENT, envelope: JSON.stringify(event) },
		});
		await node.stop();
		process.env.PROBE_CONSUMER_START_DELAY_MS = "1000";
		try {
			node = await startNode();
		} finally {
			delete process.env.PROBE_CONSUMER_START_DELAY_MS;
		}
		// Handed over once every service of the node has started: not to a consumer still starting.
		await eventually("the event handled after the restart", async () => (await effects()).some(r => r.eventId === event.eventId));
		expect((await effects()).length).toBe(before + 1);
		const { sequelize } = await runtimeOf(node.broker).database();
		const applied = await sequelize.query<{ id: string }>('SELECT id FROM "probe-consumer".schema_migrations ORDER BY id', { type: QueryTypes.SELECT });
		expect(applied.map(r => r.id)).toEqual(["db-001-unchanged-since-read", ...EVENT_TABLE_MIGRATIONS.map(m => m.id), "probe-001"]);
	});
});
