import { runtimeOf } from "../../lib/runtime";
import { freePort, startTestNode, tempDir, type TestNode } from "../../scripts/harness/node";

const data = tempDir();
let node: TestNode;
let base: string;

beforeAll(async () => {
	const port = await freePort();
	base = `http://127.0.0.1:${port}`;
	node = await startTestNode({ DATA_DIR: data.dir, SERVICES: "wallet", HEALTH_PORT: String(port) });
});
afterAll(async () => {
	await node?.stop();
	data.remove();
});

describe("a node without the gateway", () => {
	it("answers its probes on HEALTH_PORT", async () => {
		expect(node.url).toBe(""); // no gateway here
		const live = await fetch(`${base}/health/live`);
		expect([live.status, await live.json()]).toEqual([200, { status: "ok" }]);
		const ready = await fetch(`${base}/health/ready`);
		expect([ready.status, await ready.json()]).toEqual([200, { status: "ok", checks: { database: "ok" } }]);
		expect((await fetch(`${base}/api/wallet`)).status).toBe(404);
		expect((await fetch(`${base}/health/ready`, { method: "POST" })).status).toBe(405);
	});

	it("turns unready while shutting down", async () => {
		runtimeOf(node.broker).shuttingDown = true;
		try {
			const ready = await fetch(`${base}/health/ready`);
			expect(ready.status).toBe(503);
		} finally {
			runtimeOf(node.broker).shuttingDown = false;
		}
	});

	it("reports its readiness to an operator by node ID", async () => {
		const r = await node.broker.call<any, Record<string, unknown>>("$ops.readiness", {}, { nodeID: node.broker.nodeID });
		expect(r).toMatchObject({ nodeID: node.broker.nodeID, services: ["wallet"], status: "ok", checks: { database: "ok" }, shuttingDown: false });
	});
});
