import RequestQueue from "kafkajs/src/network/requestQueue";
import { patchKafkajs } from "../../lib/kafkajs-patch";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const queue = () => new RequestQueue({ maxInFlightRequests: null, requestTimeout: 30000, enforceRequestTimeout: false, clientId: "test", broker: "127.0.0.1:9092", logger: quiet });

/** How often a queue with nothing to send checks for pending requests in `ms` of fake time. */
function checksIn(q: RequestQueue, ms: number): number {
	const check = jest.spyOn(q, "checkPendingRequests");
	q.scheduleCheckPendingRequests();
	jest.advanceTimersByTime(ms);
	const n = check.mock.calls.length;
	q.destroy();
	return n;
}

describe("patchKafkajs", () => {
	// Captured before the patch: what kafkajs does on its own.
	const original = RequestQueue.prototype.scheduleCheckPendingRequests;
	beforeEach(() => jest.useFakeTimers());
	afterEach(() => jest.useRealTimers());

	it("kafkajs itself still re-arms an idle connection's check every millisecond (drop the patch once this fails)", () => {
		const q = queue();
		q.scheduleCheckPendingRequests = original;
		expect(checksIn(q, 100)).toBeGreaterThanOrEqual(90);
	});

	it("patched, a queue with nothing pending schedules no check", () => {
		patchKafkajs();
		patchKafkajs(); // idempotent: still one wrapper
		const q = queue();
		expect(checksIn(q, 100)).toBe(0);
		expect(q.throttleCheckTimeoutId).toBeNull();
	});

	it("patched, a request waiting out the broker's throttle is still checked when the throttle ends", () => {
		patchKafkajs();
		const q = queue();
		q.throttledUntil = Date.now() + 50;
		q.pending.push({});
		const check = jest.spyOn(q, "checkPendingRequests").mockImplementation(() => undefined);
		q.scheduleCheckPendingRequests();
		jest.advanceTimersByTime(49);
		expect(check).not.toHaveBeenCalled();
		jest.advanceTimersByTime(1);
		expect(check).toHaveBeenCalledTimes(1);
		q.pending.length = 0;
		q.destroy();
	});
});
