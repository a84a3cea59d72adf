import { http, tokenFor } from "./harness/http";

const ADDRESS = { name: "B", line1: "L", city: "C", postalCode: "P", country: "DE" };

export interface Burst {
	/** The accepted orders, with their owner's token and when each was posted (ms). */
	orders: Array<{ id: string; token: string; postedAt: number }>;
	/** POST /orders answer times, ms. */
	latencies: number[];
	/** Refusals by error code, with the first answer of each. */
	errors: Record<string, number>;
	errorSamples: Record<string, string>;
	/** Requests without an HTTP answer, or answered 5xx other than 503 (SPEC section 2 allows neither). */
	failed: number;
}

/**
 * A flash sale: `count` wallet orders of one unit each, posted back to back by `users` at once
 * (one request in flight per user), none waiting for its confirmation.
 */
export async function postBurst(base: string, users: string[], productIds: string[], count: number): Promise<Burst> {
	const burst: Burst = { orders: [], latencies: [], errors: {}, errorSamples: {}, failed: 0 };
	let posted = 0;
	const poster = async (user: string) => {
		const token = tokenFor(user);
		while (posted < count) {
			posted++;
			const productId = productIds[Math.floor(Math.random() * productIds.length)];
			const t0 = Date.now();
			const res = await http(base, "POST", "/api/orders", { token, body: { items: [{ productId, quantity: 1 }], shippingAddress: ADDRESS, payment: { method: "WALLET" } } }).catch(
				err => ({ status: 0, body: undefined as any, text: (err as Error).message }),
			);
			burst.latencies.push(Date.now() - t0);
			if (res.status === 201) burst.orders.push({ id: res.body.id, token, postedAt: t0 });
			else {
				const code = res.body?.error?.code ?? String(res.status);
				burst.errors[code] = (burst.errors[code] ?? 0) + 1;
				burst.errorSamples[code] ??= res.text.slice(0, 300);
				if (res.status === 0 || (res.status >= 500 && res.status !== 503)) burst.failed++;
			}
		}
	};
	await Promise.all(users.map(poster));
	return burst;
}
