/**
 * `npm run cluster`: a local cluster of node processes on the servers of test:cluster (NATS,
 * PostgreSQL, Redis, Kafka: DATABASE_URL, TRANSPORTER, REDIS_URL, KAFKA_BROKERS or their local
 * defaults), in a fresh database and Kafka topics of its own that are dropped on exit, with the mock
 * card gateway in this process, and the demo catalogue seeded. Runs until Ctrl-C (SIGINT/SIGTERM), then stops the nodes
 * with SIGTERM.
 *
 *   CLUSTER_NODES  each node's SERVICES, separated by ";" (default: see LAYOUT)
 *   CLUSTER_PORT   the gateway's HTTP port (default 3000); further gateways take the next ports
 *   CLUSTER_NODE_OPTIONS  NODE_OPTIONS for the nodes (the benchmark profiles them with --cpu-prof)
 *   CLUSTER_LOGS=1  the nodes' log lines on this process's output, each prefixed with its node
 *
 * Once every service is reachable it prints `cluster ready {json}` (gateway URL, database URL,
 * each node's name, services and pid): `npm run bench` with BENCH_TARGET=cluster reads that line.
 */
import { createInterface } from "node:readline";
import { startMockGateway } from "../lib/mock-gateway";
import { missingServers, startCluster, waitForServicesOn } from "./harness/cluster";
import { OWN_PORTS } from "./harness/node";

/** Four processes for two cores: the HTTP edge, the saga, the stock and money, the event sinks. */
const LAYOUT = "gateway;order,validation,voucher;inventory,payment,wallet;notification,audit";

async function main(): Promise<void> {
	const missing = await missingServers();
	if (missing.length > 0) throw new Error(`needs the servers of test:cluster.\n${missing.join("\n")}`);
	const layout = (process.env.CLUSTER_NODES ?? LAYOUT).split(";").map(s => s.trim()).filter(Boolean);
	const firstPort = Number(process.env.CLUSTER_PORT ?? 3000);
	const gateway = await startMockGateway();
	let port = firstPort;
	const nodes = layout.map((services, i) => ({
		name: `node-${i + 1}-${services.split(",")[0]}`,
		env: { SERVICES: services, ...(services.split(",").includes("gateway") ? { PORT: String(port++) } : {}) },
	}));
	const cluster = await startCluster(
		nodes,
		{
			PAYMENT_GATEWAY_URL: gateway.url,
			LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
			RATE_LIMIT: process.env.RATE_LIMIT ?? "1000000",
			...(process.env.CLUSTER_NODE_OPTIONS ? { NODE_OPTIONS: process.env.CLUSTER_NODE_OPTIONS } : {}),
		},
		// A deployment's settings (the configuration's defaults, or this process's environment), not the
		// tests' quicker sweeps: the benchmark measures what a deployed cluster does (a sweep every 100 ms
		// was 80 relay rounds a second).
		OWN_PORTS,
	);
	// Ready means each gateway can reach every service (a node that started first learns of the
	// slower ones by their next heartbeat).
	const services = [...new Set(layout.flatMap(l => l.split(",")))];
	for (const n of nodes.filter(n => n.env.PORT)) await waitForServicesOn(cluster.client, n.name, services);
	// The demo catalogue, as the embedded default has on its first start.
	const seeded = await cluster.call<number>("inventory.seed");
	const ready = {
		url: `http://127.0.0.1:${firstPort}`,
		databaseUrl: cluster.databaseUrl,
		topicPrefix: cluster.env.KAFKA_TOPIC_PREFIX,
		seededProducts: seeded,
		paymentGateway: gateway.url,
		nodes: cluster.nodes.map((n, i) => ({ name: n.name, services: nodes[i].env.SERVICES, pid: n.child.pid })),
	};
	console.log(`cluster ready ${JSON.stringify(ready)}`);
	console.log(`API ${ready.url}/api (demo catalogue: ${seeded} products), database ${cluster.databaseUrl} and Kafka topics ${cluster.env.KAFKA_TOPIC_PREFIX}* (dropped on exit); Ctrl-C stops it.`);
	let stopping = false;
	const stop = async () => {
		if (stopping) return;
		stopping = true;
		console.log("cluster: stopping");
		await Promise.all(cluster.nodes.map(n => n.stop("SIGTERM")));
		await cluster.stop();
		await gateway.close();
		process.exit(0);
	};
	process.on("SIGINT", stop);
	process.on("SIGTERM", stop);
	if (process.env.CLUSTER_LOGS === "1") {
		for (const n of cluster.nodes) {
			for (const stream of [n.child.stdout!, n.child.stderr!]) {
				createInterface({ input: stream }).on("line", line => console.log(`${n.name} | ${line}`));
			}
		}
	}
	for (const n of cluster.nodes) {
		void n.exited.then(code => {
			if (!stopping) console.error(`cluster: ${n.name} exited (${code}):\n${n.output().slice(-2000)}`);
		});
	}
}

main().catch(err => {
	console.error(`cluster: ${(err as Error).message}`);
	process.exit(1);
});
