/**
 * The outbox relay on real PostgreSQL, where two nodes' relays really run at once: one relay per
 * schema publishes at a time (the advisory lock), in commit order, and marks rows only after the
 * publish succeeded.
 */
import { Sequelize } from "sequelize";
import type { Logger } from "moleculer";
import { runMigrations } from "../../lib/migrations";
import { EVENT_TABLE_MIGRATIONS } from "../../lib/events/tables";
import { OutboxRelay, writeToOutbox, type OutboxMessage } from "../../lib/events/relay";
import { inTransaction } from "../../lib/transactions";
import { freshDatabase } from "../../scripts/harness/cluster";
import { eventually } from "../../scripts/harness/node";

const quiet = { info() {}, warn() {}, error() {}, debug() {} } as unknown as Logger;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let a: Sequelize;
let b: Sequelize;

beforeAll(async () => {
	db = await freshDatabase();
	a = new Sequelize(db.url, { logging: false });
	b = new Sequelize(db.url, { logging: false });
	await runMigrations(a, "relayed", EVENT_TABLE_MIGRATIONS);
});
afterAll(async () => {
	await a?.close();
	await b?.close();
	await db?.drop();
});

/** `n` events in one transaction through node `on`'s connection, into `schema`'s outbox; their ids. */
const write = (n: number, on: Sequelize = a, schema = "relayed") =>
	inTransaction(on, async tx => Array.from({ length: n }, (_, i) => writeToOutbox(on, schema, tx, "probe.happened", { i }, { service: schema, nodeID: "t" }, { key: "k" }).eventId));
const unpublished = async () => Number(((await a.query(`SELECT count(*) AS n FROM relayed.outbox WHERE published_at IS NULL`, { plain: true })) as any).n);

it("publishes in commit order, and only one of two nodes' relays publishes at a time", async () => {
	await write(450); // more than one batch
	const seen: Array<{ relay: string; seqs: string[] }> = [];
	let inside = 0;
	let overlapped = false;
	const publisher = (relay: string) => async (messages: OutboxMessage[]) => {
		if (++inside > 1) overlapped = true;
		await new Promise(r => setTimeout(r, 30)); // a slow broker widens the window for overlap
		seen.push({ relay, seqs: messages.map(m => m.seq) });
		inside--;
	};
	const one = new OutboxRelay(a, "relayed", publisher("a"), quiet, 60000);
	const two = new OutboxRelay(b, "relayed", publisher("b"), quiet, 60000);
	await Promise.all([one.drain(), two.drain(), one.drain(), two.drain()]);

	expect(overlapped).toBe(false);
	const order = seen.flatMap(s => s.seqs.map(Number));
	expect(order).toHaveLength(450); // each row once: a relay that lost the lock published nothing
	expect(order).toEqual([...order].sort((x, y) => x - y));
	expect(await unpublished()).toBe(0);
});

it("keeps the rows when the publish fails, and publishes them on the next round", async () => {
	await write(3);
	const failing = new OutboxRelay(a, "relayed", async () => Promise.reject(new Error("broker down")), quiet, 60000);
	await expect(failing.drain()).rejects.toThrow("broker down");
	expect(await unpublished()).toBe(3);
	const names: string[] = [];
	await new OutboxRelay(a, "relayed", async m => void names.push(...m.map(x => x.event.eventName)), quiet, 60000).drain();
	expect(names).toEqual(["probe.happened", "probe.happened", "probe.happened"]);
	expect(await unpublished()).toBe(0);
});

it("on the bus, hands a batch over once per run of the relay, marks it published once handed over and handled, and hands over again, after a restart, what a killed node never saw handled", async () => {
	await write(3);
	const handedAt = async () => Number(((await a.query(`SELECT count(*) AS n FROM relayed.outbox WHERE handed_at IS NOT NULL AND published_at IS NULL`, { plain: true })) as any).n);
	// The node is killed while its consumers work: handed over, never published.
	const killed: string[] = [];
	const never = new OutboxRelay(a, "relayed", {
			handOver: events => {
				killed.push(...events.map(e => e.eventId));
				return new Promise(() => {});
			},
		}, quiet, 60000);
	await never.drain();
	await never.drain(); // not handed over twice by one run
	expect(killed).toHaveLength(3);
	expect(await handedAt()).toBe(3);
	// Its next start (here on another connection, as another process) hands them over again; the round after marks them.
	const handed: string[] = [];
	const restarted = new OutboxRelay(b, "relayed", { handOver: async events => void handed.push(...events.map(e => e.eventId)) }, quiet, 60000);
	await restarted.drain();
	expect(handed.sort()).toEqual([...killed].sort());
	expect(await unpublished()).toBe(3);
	await restarted.drain();
	expect(await unpublished()).toBe(0);
	expect(handed).toHaveLength(3);
});

it("a relay that finds another node's relay holding the lock tries again soon, not at its next sweep", async () => {
	const published: string[] = [];
	let release!: () => void;
	const released = new Promise<void>(r => (release = r));
	let publishing!: () => void;
	const inPublish = new Promise<void>(r => (publishing = r));
	// Node a's relay holds the lock in a slow publish of what it read before node b's commit.
	const slow = new OutboxRelay(a, "relayed", async messages => {
		publishing();
		await released;
		published.push(...messages.map(m => m.event.eventId));
	}, quiet, 60000);
	const fast = new OutboxRelay(b, "relayed", async messages => void published.push(...messages.map(m => m.event.eventId)), quiet, 60000);
	const [first] = await write(1, a);
	slow.start();
	await inPublish;
	const [second] = await write(1, b);
	fast.start(); // its first round finds the lock held
	await new Promise(r => setTimeout(r, 100));
	release();
	try {
		// Both sweep only every 60 s: the second event is published within a second only if node b's relay retried.
		// A relay marks its rows after the publish returns, so the mark is waited for too.
		await eventually("node b's event to be published and marked", async () => published.includes(second) && (await unpublished()) === 0, 1000, 20);
		expect(published).toContain(first);
	} finally {
		await Promise.all([slow.stop(), fast.stop()]);
	}
});

it("a round passes over the rows published before it only once: their entries in the unpublished index are marked dead as it reads", async () => {
	// A young table, as in a new cluster's first minute: no statistics, no vacuum. The planner then
	// chose a bitmap scan for the batch, which marks no entry dead, so each round read every row
	// published since the table was last vacuumed.
	await runMigrations(a, "young", EVENT_TABLE_MIGRATIONS);
	await a.query(`ALTER TABLE young.outbox SET (autovacuum_enabled = false)`);
	await a.query(`CREATE EXTENSION IF NOT EXISTS pageinspect`);
	const relay = new OutboxRelay(a, "young", async () => undefined, quiet, 60000);
	for (let round = 0; round < 100; round++) {
		await write(10, a, "young");
		await relay.drain();
	}
	// Index entries not marked dead, on the index's leaf pages (page 0 is the metapage; the root is not a leaf once the index has several pages).
	const { live } = (await a.query(
		`SELECT count(*)::int AS live FROM generate_series(1, pg_relation_size('young.outbox_unpublished') / current_setting('block_size')::int - 1) AS page,
		   LATERAL bt_page_items('young.outbox_unpublished', page::int) AS item
		 WHERE NOT item.dead AND (SELECT type FROM bt_page_stats('young.outbox_unpublished', page::int)) = 'l'`,
		{ plain: true },
	)) as { live: number };
	// 1,000 rows published: at most the last rounds' entries (not yet dead to every transaction when read) are left unmarked.
	expect(live).toBeLessThan(50);
});
