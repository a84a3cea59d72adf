import Redlock from "redlock";
import type Redis from "ioredis";
import { Errors } from "moleculer";

/** A held lock over some keys; `extend` pushes its expiry, `release` frees it. */
export interface Lease {
	extend(ttlMs: number): Promise<void>;
	release(): Promise<void>;
}

export interface Locker {
	acquire(keys: string[], ttlMs: number, waitMs: number): Promise<Lease>;
}

/** 503-class, retryable: the caller may try again once the holder is done. */
export class LockTimeoutError extends Errors.MoleculerRetryableError {
	constructor(keys: string[], waitMs: number) {
		super(`Could not lock ${keys.join(", ")} within ${waitMs} ms`, 503, "LOCK_TIMEOUT", { keys, waitMs });
	}
}

/** Keys sorted and without duplicates: every holder takes them in one order, so none deadlock. */
export function normalizeKeys(keys: readonly string[]): string[] {
	if (keys.length === 0) throw new Error("withLock needs at least one key");
	return [...new Set(keys)].sort();
}

/** One process: a FIFO queue per key. Used when REDIS_URL is unset (one node owns all state). */
export class LocalLocker implements Locker {
	private readonly tails = new Map<string, Promise<void>>();

	async acquire(keys: string[], _ttlMs: number, waitMs: number): Promise<Lease> {
		const sorted = normalizeKeys(keys);
		const deadline = Date.now() + waitMs;
		const releases: Array<() => void> = [];
		try {
			for (const key of sorted) releases.push(await this.acquireOne(key, deadline, sorted, waitMs));
		} catch (err) {
			releases.reverse().forEach(release => release());
			throw err;
		}
		let released = false;
		return {
			extend: async () => undefined, // nothing expires in-process
			release: async () => {
				if (released) return;
				released = true;
				releases.reverse().forEach(release => release());
			},
		};
	}

	private async acquireOne(key: string, deadline: number, keys: string[], waitMs: number): Promise<() => void> {
		const previous = this.tails.get(key) ?? Promise.resolve();
		let release!: () => void;
		const mine = new Promise<void>(resolve => (release = resolve));
		const tail = previous.then(() => mine);
		this.tails.set(key, tail);
		const done = () => {
			release();
			if (this.tails.get(key) === tail) this.tails.delete(key);
		};
		let timer: NodeJS.Timeout | undefined;
		const timedOut = new Promise<"timeout">(resolve => (timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - Date.now()))));
		const outcome = await Promise.race([previous.then(() => "ok" as const), timedOut]);
		clearTimeout(timer);
		if (outcome === "timeout") {
			// Our place in the queue passes straight through once the holder before us is done.
			done();
			throw new LockTimeoutError(keys, waitMs);
		}
		return done;
	}
}

/** redlock 4 has `acquireWithOptions` (per-call retries); its published types lack it. */
type RedlockWithOptions = Redlock & {
	acquireWithOptions(resource: string[], ttl: number, options: Pick<Redlock.Options, "retryCount" | "retryDelay">): Promise<Redlock.Lock>;
};

/** Many nodes: Redlock over the node's Redis connection, all keys taken atomically in one script. */
export class RedisLocker implements Locker {
	private readonly redlock: RedlockWithOptions;

	constructor(
		redis: Redis,
		private readonly prefix: string,
	) {
		// ioredis satisfies what Redlock calls (`eval`); only the published types disagree.
		this.redlock = new Redlock([redis as unknown as Redlock.CompatibleRedisClient], {
			driftFactor: 0.01,
			retryCount: 0,
			retryDelay: 50,
			retryJitter: 50,
		}) as RedlockWithOptions;
	}

	async acquire(keys: string[], ttlMs: number, waitMs: number): Promise<Lease> {
		const sorted = normalizeKeys(keys);
		const resources = sorted.map(k => `${this.prefix}${k}`);
		const retryDelay = 50;
		let lock: Redlock.Lock;
		try {
			lock = await this.redlock.acquireWithOptions(resources, ttlMs, {
				retryCount: Math.max(0, Math.ceil(waitMs / retryDelay)),
				retryDelay,
			});
		} catch (err) {
			if (err instanceof Redlock.LockError) throw new LockTimeoutError(sorted, waitMs);
			throw err;
		}
		return {
			extend: async (ms: number) => {
				lock = await lock.extend(ms);
			},
			release: async () => {
				// An expired lock is already free; nothing to undo.
				await lock.unlock().catch(() => undefined);
			},
		};
	}
}

/**
 * Runs `fn` while holding every key; the lease is extended at a third of its TTL for as long as
 * `fn` runs, so long work keeps the lock, and a crashed holder frees it after one TTL.
 */
export async function withLease<T>(locker: Locker, keys: string[], ttlMs: number, waitMs: number, fn: () => Promise<T>): Promise<T> {
	const lease = await locker.acquire(keys, ttlMs, waitMs);
	let extending: Promise<void> = Promise.resolve();
	const timer = setInterval(() => {
		extending = lease.extend(ttlMs).catch(() => undefined);
	}, Math.max(10, Math.floor(ttlMs / 3)));
	try {
		return await fn();
	} finally {
		clearInterval(timer);
		await extending;
		await lease.release();
	}
}
