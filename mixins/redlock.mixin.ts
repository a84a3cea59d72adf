import type { Service, ServiceSchema } from "moleculer";
import { runtimeOf } from "../lib/runtime";
import { withLease } from "../lib/locks";

export interface LockOptions {
	/** How long the lock lives without an extension; it is extended while the work runs. */
	ttlMs?: number;
	/** How long to wait for the keys before failing with LOCK_TIMEOUT (503, retryable). */
	waitMs?: number;
}

export interface RedlockMethods {
	withLock<T>(keys: string[], fn: () => Promise<T>, opts?: LockOptions): Promise<T>;
}

/**
 * `this.withLock(keys, fn)`: runs `fn` holding every key, cluster-wide over Redlock when REDIS_URL
 * is set, in-process otherwise. Keys are sorted, so two holders of overlapping sets never deadlock.
 */
export function RedlockMixin(defaults: LockOptions = {}): Partial<ServiceSchema> {
	return {
		methods: {
			withLock<T>(this: Service, keys: string[], fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
				const runtime = runtimeOf(this.broker);
				const ttlMs = opts.ttlMs ?? defaults.ttlMs ?? runtime.config.lockTtlMs;
				const waitMs = opts.waitMs ?? defaults.waitMs ?? runtime.config.lockWaitMs;
				return withLease(runtime.locker(), keys, ttlMs, waitMs, fn);
			},
		},
	};
}
