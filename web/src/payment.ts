import { api, must } from "./api/client";

/** The hosted payment page for an order waiting for payment: a session, then the browser goes there. */
export async function payOnHostedPage(orderId: string): Promise<void> {
	const back = `${location.origin}${location.pathname}`;
	const session = await must(
		api.POST("/api/orders/{id}/payment-session", {
			params: { path: { id: orderId } },
			body: { successUrl: `${back}#/paid?session={SESSION_ID}`, cancelUrl: `${back}#/orders/${orderId}` },
		}),
	);
	location.assign(session.url);
}

/** Waits until the order's stock is reserved (PAYMENT_PENDING) or its saga ended; its status then. */
export async function untilPayable(orderId: string, timeoutMs = 20000): Promise<string> {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const order = await must(api.GET("/api/orders/{id}", { params: { path: { id: orderId } } }));
		if (order.status !== "CREATED" || Date.now() > deadline) return order.status;
		await new Promise(r => setTimeout(r, 300));
	}
}
