import type { ServiceBroker } from "moleculer";

interface NodeInfo {
	id: string;
	instanceID: string;
	local?: boolean;
}

/**
 * A node restarted under the same nodeID (a fixed NODE_ID, a container's PID 1) announces itself
 * before the heartbeat timeout, and Moleculer takes it for the node it knew: the requests that the
 * previous process held would wait out their whole timeout (60 s for a payment). A new instanceID
 * says that process is gone, so its requests are rejected now (RequestRejectedError, retryable:
 * the retry policy sends them to a live node). Returns the handler for $node.connected/updated.
 */
export function watchIncarnations(broker: ServiceBroker): (node: NodeInfo) => void {
	const known = new Map<string, string>();
	return node => {
		if (node.local) return;
		const before = known.get(node.id);
		known.set(node.id, node.instanceID);
		if (before === undefined || before === node.instanceID) return;
		broker.logger.warn(`Node '${node.id}' restarted: the requests its previous process held are retried on a live node.`);
		broker.transit?.removePendingRequestByNodeID(node.id);
	};
}
