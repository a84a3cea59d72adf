/**
 * `npm run test:cluster` needs real servers. Each is checked first; a missing one fails the run
 * with its name and how to start it, never a silent skip.
 */
import net from "node:net";
import { SERVERS } from "../helpers/cluster";

function reachable(host: string, port: number): Promise<void> {
	return new Promise((resolve, reject) => {
		const s = net.connect({ host, port, timeout: 3000 });
		s.once("connect", () => (s.destroy(), resolve()));
		s.once("timeout", () => (s.destroy(), reject(new Error("timeout"))));
		s.once("error", reject);
	});
}

function hostPort(url: string, defaultPort: number): [string, number] {
	if (!url.includes("://")) url = `tcp://${url.split(",")[0]}`;
	const u = new URL(url);
	return [u.hostname, Number(u.port || defaultPort)];
}

export default async function globalSetup(): Promise<void> {
	const servers: Array<[string, string, string, number]> = [
		["PostgreSQL", "DATABASE_URL", SERVERS.DATABASE_URL, 5432],
		["Redis", "REDIS_URL", SERVERS.REDIS_URL, 6379],
		["NATS", "TRANSPORTER", SERVERS.TRANSPORTER, 4222],
		["Kafka", "KAFKA_BROKERS", SERVERS.KAFKA_BROKERS, 9092],
	];
	const missing: string[] = [];
	for (const [name, variable, url, port] of servers) {
		const [host, p] = hostPort(url, port);
		try {
			await reachable(host, p);
		} catch (err) {
			missing.push(`${name} is not reachable at ${host}:${p} (${variable}): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
		}
	}
	if (missing.length > 0) {
		throw new Error(`test:cluster needs real servers.\n${missing.join("\n")}\nKafka: \`npm run kafka -- start\`; the others: see README "Running the tests".`);
	}
}
