import { Client } from "pg";
import { statementsOf } from "../../lib/sql";

/**
 * Hands every SQL statement this process sends through `pg` to `seen` (Sequelize's own and the
 * hot path's `sqlQuery` alike, transactions' BEGIN and COMMIT included, an EXECUTE as the text of
 * its prepared statement), and tells whether it opens a message (a round trip), until the returned
 * stop is called: what the statement counts of the tests and of `npm run bench:sql` read.
 */
export function watchStatements(seen: (sql: string, opensMessage: boolean) => void): () => void {
	const original = Client.prototype.query;
	Client.prototype.query = function (this: Client, config: unknown, ...rest: unknown[]) {
		const text = typeof config === "string" ? config : (config as { text?: unknown } | undefined)?.text;
		if (typeof text === "string") statementsOf(text).forEach((statement, i) => seen(statement, i === 0));
		return (original as (...args: unknown[]) => unknown).call(this, config, ...rest);
	} as typeof original;
	return () => {
		Client.prototype.query = original;
	};
}
