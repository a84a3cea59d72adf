/** Exponential backoff with a ceiling: 1st retry after `baseMs`, doubling, never above `maxMs`. */
export function backoffDelay(attempt: number, baseMs = 100, maxMs = 5000): number {
	if (attempt < 1) return 0;
	return Math.min(maxMs, baseMs * 2 ** (attempt - 1));
}

export const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms));
