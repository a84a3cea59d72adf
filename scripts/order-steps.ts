/** Where a confirmed order's time goes, step by step (the benchmark's `stepsMs`). */

/** Milliseconds each step of a checkout took, by step (`CREATED → PAYMENT_PENDING`, …), over a run's confirmed orders. */
export type StepTimes = Record<string, number[]>;
/**
 * Adds one confirmed order's steps: from its POST to CREATED, between its consecutive statuses (its
 * own history, on the node's clock, the machine's here), and from CONFIRMED to the customer seeing it
 * when `seenAt` is known. Where the closed loop's time per checkout goes, hop by hop.
 */
export function addSteps(steps: StepTimes, postedAt: number, history: Array<{ status: string; at: string }>, seenAt?: number): void {
	const add = (step: string, ms: number) => (steps[step] ??= []).push(ms);
	let from = { status: "POST", at: postedAt };
	for (const h of history) {
		const at = Date.parse(h.at);
		add(`${from.status} → ${h.status}`, at - from.at);
		from = { status: h.status, at };
		if (h.status === "CONFIRMED") break;
	}
	if (seenAt !== undefined) add(`${from.status} → customer`, seenAt - from.at);
}

/** A run's steps of a confirmed order, in the order they happen, as `step p50/p95` (ms). */
export const stepsLine = (steps: Record<string, { p50: number; p95: number }> = {}): string =>
	Object.entries(steps)
		.map(([step, t]) => `${step} ${t.p50}/${t.p95}`)
		.join(", ") || "none";
