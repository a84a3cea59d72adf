import type { ServiceBroker } from "moleculer";
import { NotFoundError } from "./errors";

/**
 * What operators look at across the cluster, for the REPL and the console's admin routes alike:
 * each node's readiness, the dead letters and outbox backlogs of every service that has them.
 */

/** Every service in the cluster that has `<service>.<action>`. */
export function servicesWith(broker: ServiceBroker, action: string): string[] {
	const list = (broker.registry as any).getActionList({ onlyAvailable: true, skipInternal: true }) as Array<{ name: string }>;
	return [...new Set(list.filter(a => a.name.endsWith(`.${action}`)).map(a => a.name.slice(0, -action.length - 1)))].sort();
}

export interface NodeReadiness {
	nodeID: string;
	status: string;
	services: string[];
	checks: Record<string, string>;
	uptimeSeconds?: number;
	memoryMb?: number;
	shuttingDown?: boolean;
	error?: string;
}

/** Every available node's readiness (a node that does not answer says why). */
export async function nodesReadiness(broker: ServiceBroker): Promise<NodeReadiness[]> {
	const nodes = ((broker.registry as any).getNodeList({ onlyAvailable: true }) as Array<{ id: string }>).sort((a, b) => a.id.localeCompare(b.id));
	return Promise.all(
		nodes.map(({ id }) =>
			broker.call<NodeReadiness, Record<string, unknown>>("$ops.readiness", {}, { nodeID: id, timeout: 3000 }).then(
				r => ({ nodeID: id, status: r.status, services: r.services, checks: r.checks ?? {}, uptimeSeconds: r.uptimeSeconds, memoryMb: r.memoryMb, shuttingDown: r.shuttingDown }),
				err => ({ nodeID: id, status: "unavailable", services: [], checks: {}, error: (err as Error).message }),
			),
		),
	);
}

export interface ServiceDeadLetter {
	service: string;
	id: number;
	eventId: string | null;
	eventName: string;
	error: string;
	attempts: number;
	createdAt: string;
}

/** The dead letters not replayed yet, of every service (newest first, at most 100 each). */
export async function pendingDeadLetters(broker: ServiceBroker): Promise<ServiceDeadLetter[]> {
	const pages = await Promise.all(
		servicesWith(broker, "deadLetters").map(async service => {
			const page = await broker.call<{ rows: Array<Omit<ServiceDeadLetter, "service">> }, Record<string, unknown>>(`${service}.deadLetters`, { pending: true, pageSize: 100 });
			return page.rows.map(({ id, eventId, eventName, error, attempts, createdAt }) => ({ service, id, eventId, eventName, error, attempts, createdAt }));
		}),
	);
	return pages.flat().sort((a, b) => b.createdAt.localeCompare(a.createdAt));
}

/** Hands a dead letter to its service's handler again; only services that keep dead letters are asked. */
export async function replayDeadLetter(broker: ServiceBroker, service: string, id: number): Promise<{ outcome: string }> {
	if (!servicesWith(broker, "replayDeadLetter").includes(service)) throw new NotFoundError("Dead letter", { service, id });
	return broker.call(`${service}.replayDeadLetter`, { id });
}

/** Events written but not published yet, per service. */
export async function outboxBacklogs(broker: ServiceBroker): Promise<Array<{ service: string; unpublished: number }>> {
	return Promise.all(servicesWith(broker, "outboxBacklog").map(async service => ({ service, unpublished: await broker.call<number>(`${service}.outboxBacklog`) })));
}
