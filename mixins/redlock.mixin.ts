import type { Service, ServiceBroker, ServiceSchema } from "moleculer";
import { runtimeOf } from "../lib/runtime";
import { LockTimeoutError, withLease } from "../lib/locks";
import { countMetric } from "../lib/metrics";

/** Takes `keys` for `fn` with the node's locker and settings, counting the timeouts as contention. */
export async function lockedFor<T>(broker: ServiceBroker, service: string, keys: string[], fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
	const runtime = runtimeOf(broker);
	try {
		return await withLease(runtime.locker(), keys, opts.ttlMs ?? runtime.config.lockTtlMs, opts.waitMs ?? runtime.config.lockWaitMs, fn);
	} catch (err) {
		if (err instanceof LockTimeoutError) countMetric(broker, "lockTimeouts", { service });
		throw err;
	}
}

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
				return lockedFor(this.broker, this.name, keys, fn, { ...defaults, ...opts });
			},
		},
	};
}
