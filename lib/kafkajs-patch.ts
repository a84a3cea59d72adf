import RequestQueue from "kafkajs/src/network/requestQueue";

const PATCHED = Symbol("checkout.kafkajsPatched");

/**
 * Corrects kafkajs 2.2.4's request queue, which re-arms a timer on every connection about once a
 * millisecond for as long as the connection lives, whether or not a request waits
 * (tulios/kafkajs#1556 and #1704, open upstream; its fix #1667 is unmerged). With its four to seven
 * connections to the broker an idle node spent 4–5 % of a core instead of 2–3 %, and a busy one woke
 * its event loop thousands of times a second for nothing (bench/ANALYSIS.md). A check is scheduled
 * only when a request waits to be sent, as upstream's fix does: a request pushed later schedules its
 * own check, and every fulfilled request checks the queue anyway.
 *
 * Patched at run time rather than in node_modules (patch-package) so that every install takes it,
 * the Dockerfile's `npm ci --ignore-scripts` included. Idempotent.
 */
export function patchKafkajs(): void {
	const proto = RequestQueue.prototype as RequestQueue & { [PATCHED]?: true };
	if (proto[PATCHED]) return;
	const schedule = proto.scheduleCheckPendingRequests;
	if (typeof schedule !== "function") throw new Error("kafkajs changed: RequestQueue.scheduleCheckPendingRequests is gone; review lib/kafkajs-patch.ts");
	proto.scheduleCheckPendingRequests = function (this: RequestQueue) {
		if (this.pending.length > 0) schedule.call(this);
	};
	proto[PATCHED] = true;
}
