/**
 * A node killed and started again under the same nodeID (a fixed NODE_ID, a container's PID 1)
 * comes back before the others' heartbeat timeout: the requests its previous process held are
 * rejected as soon as the new process announces itself, instead of waiting out their timeout.
 */
import type { ServiceBroker } from "moleculer";
import { clusterEnv, freshDatabase, spawnNode, startClient, waitForService, type NodeProcess } from "../../scripts/harness/cluster";

let db: Awaited<ReturnType<typeof freshDatabase>>;
let env: Record<string, string>;
let client: ServiceBroker;
const nodes: NodeProcess[] = [];

beforeAll(async () => {
	db = await freshDatabase();
	// No Kafka (the probe's events are not under test), and a heartbeat timeout longer than the
	// call's: only the new instance's announcement can end the held request in time.
	env = { ...clusterEnv(db.url), KAFKA_BROKERS: "", HEARTBEAT_TIMEOUT_S: "120" };
	client = await startClient(env);
});

afterAll(async () => {
	await client?.stop();
	await Promise.all(nodes.map(n => n.stop("SIGKILL")));
	await db?.drop();
});

const start = async () => {
	const node = await spawnNode("node-f", { ...env, SERVICES: "none", PROBES: "consumer" });
	nodes.push(node);
	return node;
};

it("rejects at once, for a retry elsewhere, the requests a killed node held when it comes back under its nodeID", async () => {
	const first = await start();
	await waitForService(client, "probe-consumer");
	// A request the node is working on (it holds a lock for a minute) when it is killed.
	const held = client
		.call("probe-consumer.critical", { keys: ["held"], holdMs: 60000 }, { nodeID: "node-f", timeout: 30000, retries: 0 })
		.then(() => undefined, (err: Error) => err);
	await new Promise(r => setTimeout(r, 1000));
	await first.stop("SIGKILL");
	await start();
	const err = await held;
	expect(err?.name).toBe("RequestRejectedError");
	expect(await client.call("probe-consumer.whoami", {}, { nodeID: "node-f" })).toBe("node-f");
});
