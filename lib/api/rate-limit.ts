import type Redis from "ioredis";

/** Counts hits of a key in fixed windows; answers the count so far and when the window ends. */
export interface RateStore {
	hit(key: string, windowMs: number): Promise<{ count: number; resetInMs: number }>;
}

/** One node's memory: for the embedded default. */
export class MemoryRateStore implements RateStore {
	private readonly windows = new Map<string, { count: number; endsAt: number }>();
	private lastSweep = Date.now();

	async hit(key: string, windowMs: number) {
		const now = Date.now();
		if (now - this.lastSweep > windowMs) {
			for (const [k, w] of this.windows) if (w.endsAt <= now) this.windows.delete(k);
			this.lastSweep = now;
		}
		let w = this.windows.get(key);
		if (!w || w.endsAt <= now) {
			w = { count: 0, endsAt: now + windowMs };
			this.windows.set(key, w);
		}
		w.count++;
		return { count: w.count, resetInMs: w.endsAt - now };
	}
}

/**
 * A hit: the count, and the window's expiry set by its first hit. One script is one command per
 * request, atomic, where MULTI, INCR, PEXPIRE, PTTL and EXEC were five.
 */
const HIT = `local count = redis.call("INCR", KEYS[1])
local ttl = redis.call("PTTL", KEYS[1])
if ttl < 0 then
	redis.call("PEXPIRE", KEYS[1], ARGV[1])
	ttl = tonumber(ARGV[1])
end
return {count, ttl}`;

/** Redis: every gateway node counts in the same window. */
export class RedisRateStore implements RateStore {
	constructor(
		private readonly redis: Redis,
		private readonly prefix: string,
	) {}

	async hit(key: string, windowMs: number) {
		const [count, ttl] = (await this.redis.eval(HIT, 1, `${this.prefix}${key}`, windowMs)) as [number, number];
		return { count, resetInMs: ttl > 0 ? ttl : windowMs };
	}
}

export interface RateDecision {
	allowed: boolean;
	limit: number;
	remaining: number;
	retryAfterSeconds: number;
}

export async function checkRate(store: RateStore, key: string, limit: number, windowMs: number): Promise<RateDecision> {
	const { count, resetInMs } = await store.hit(key, windowMs);
	return { allowed: count <= limit, limit, remaining: Math.max(0, limit - count), retryAfterSeconds: Math.max(1, Math.ceil(resetInMs / 1000)) };
}
