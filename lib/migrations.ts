import { QueryTypes, type Sequelize } from "sequelize";

/** A versioned schema change. `sql` runs with the owning service's schema first on the search_path. */
export interface Migration {
	id: string;
	sql: string;
}

/** One key for every migration run in the cluster: nodes starting together apply changes one at a time. */
const MIGRATION_LOCK_KEY = 7_141_592_653;

export function quoteIdent(name: string): string {
	return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Applies the pending migrations of one schema (a service's own tables live in a PostgreSQL
 * schema named after it). Idempotent, and safe when many nodes start at once: the whole run holds
 * a transaction-scoped advisory lock, so a second node waits, then finds nothing left to do.
 * Returns the ids it applied.
 */
export async function runMigrations(sequelize: Sequelize, schema: string, migrations: readonly Migration[]): Promise<string[]> {
	const ids = new Set<string>();
	for (const m of migrations) {
		if (ids.has(m.id)) throw new Error(`migration id "${m.id}" is used twice in schema ${schema}`);
		ids.add(m.id);
	}
	const s = quoteIdent(schema);
	return sequelize.transaction(async transaction => {
		await sequelize.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`, { transaction });
		await sequelize.query(`CREATE SCHEMA IF NOT EXISTS ${s}`, { transaction });
		await sequelize.query(
			`CREATE TABLE IF NOT EXISTS ${s}.schema_migrations (id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
			{ transaction },
		);
		const rows = await sequelize.query<{ id: string }>(`SELECT id FROM ${s}.schema_migrations`, {
			type: QueryTypes.SELECT,
			transaction,
		});
		const applied = new Set(rows.map(r => r.id));
		const done: string[] = [];
		for (const m of migrations) {
			if (applied.has(m.id)) continue;
			await sequelize.query(`SET LOCAL search_path TO ${s}, public`, { transaction });
			await sequelize.query(m.sql, { transaction });
			await sequelize.query(`INSERT INTO ${s}.schema_migrations (id) VALUES (:id)`, {
				replacements: { id: m.id },
				transaction,
			});
			done.push(m.id);
		}
		await sequelize.query("SET LOCAL search_path TO DEFAULT", { transaction });
		return done;
	});
}
