/** What the watchdog remembers of a consumer group between its rounds. */
export interface QueueProgress {
	position: number;
	movedAt: number;
}

/**
 * Whether a consumer group's backlog is a queue that moves: events wait for it (`lag` > 0) and its
 * committed position advanced within `staleMs`. Steps waiting in such a queue are reached in turn;
 * re-driving them would only add load. A group that stopped moving is stuck, and its steps are
 * re-driven. The first sighting counts as a move (the group gets `staleMs` to show progress).
 */
export function queueVerdict(before: QueueProgress | undefined, now: { lag: number; position: number }, at: number, staleMs: number): { moving: boolean; progress: QueueProgress } {
	const movedAt = !before || before.position !== now.position ? at : before.movedAt;
	return { moving: now.lag > 0 && at - movedAt < staleMs, progress: { position: now.position, movedAt } };
}
