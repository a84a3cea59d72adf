/**
 * A circuit breaker for one outside dependency: after `threshold` failures in a row it opens and
 * refuses calls for `openMs`; then one trial call decides whether it closes again.
 */
export class CircuitBreaker {
	private failures = 0;
	private openedAt?: number;
	private trial = false;

	constructor(
		private readonly threshold: number,
		private readonly openMs: number,
		private readonly now: () => number = Date.now,
	) {}

	get state(): "closed" | "open" | "half-open" {
		if (this.openedAt === undefined) return "closed";
		return this.now() - this.openedAt >= this.openMs ? "half-open" : "open";
	}

	/** Whether a call may go out now (in half-open, only the one trial call). */
	allow(): boolean {
		const state = this.state;
		if (state === "closed") return true;
		if (state === "half-open" && !this.trial) {
			this.trial = true;
			return true;
		}
		return false;
	}

	success(): void {
		this.failures = 0;
		this.openedAt = undefined;
		this.trial = false;
	}

	failure(): void {
		this.failures++;
		if (this.trial || this.failures >= this.threshold) {
			this.openedAt = this.now();
			this.trial = false;
		}
	}
}
