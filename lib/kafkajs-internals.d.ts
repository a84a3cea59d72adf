/** The one kafkajs internal that lib/kafkajs-patch.ts corrects (kafkajs ships no types for it). */
declare module "kafkajs/src/network/requestQueue" {
	class RequestQueue {
		constructor(options: { maxInFlightRequests: number | null; requestTimeout: number; enforceRequestTimeout: boolean; clientId: string; broker: string; logger: unknown });
		pending: unknown[];
		throttledUntil: number;
		throttleCheckTimeoutId: NodeJS.Timeout | null;
		checkPendingRequests(): void;
		scheduleCheckPendingRequests(): void;
		destroy(): void;
	}
	export = RequestQueue;
}
