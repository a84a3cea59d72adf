/** The value at percentile `p` (0–100) of values sorted ascending, nearest rank below; 0 when there are none. */
export const percentile = (sorted: number[], p: number): number => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : 0);
