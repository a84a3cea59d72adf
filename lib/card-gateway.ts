import { CircuitBreaker } from "./circuit-breaker";
import { backoffDelay, sleep } from "./events/backoff";

export type FailureCode = "PAYMENT_DECLINED" | "INSUFFICIENT_FUNDS" | "PROVIDER_UNAVAILABLE";
/** `ambiguous`: a request went out without a definite answer, so the gateway may have charged. */
export type ChargeOutcome = { ok: true; chargeId: string } | { ok: false; code: FailureCode; reason: string; ambiguous?: boolean };
export type RefundOutcome = { ok: true; refundId: string } | { ok: false; reason: string };

/** A hosted payment session as the shop reads it (Stripe Checkout's, in this API's camelCase). */
export interface GatewaySession {
	id: string;
	url: string;
	status: "open" | "complete" | "expired";
	paymentStatus: "unpaid" | "paid";
	amount: number;
	currency: string;
	expiresAt: string;
	chargeId: string | null;
	orderId: string | null;
}
export type SessionOutcome = { ok: true; session: GatewaySession } | { ok: false; reason: string; unavailable: boolean };

/** The gateway's session object (snake_case, unix seconds) as a GatewaySession; undefined if it is not one. */
export function sessionFromWire(o: any): GatewaySession | undefined {
	if (!o || typeof o !== "object" || typeof o.id !== "string" || !["open", "complete", "expired"].includes(o.status) || !Number.isSafeInteger(o.expires_at)) return undefined;
	return {
		id: o.id,
		url: String(o.url ?? ""),
		status: o.status,
		paymentStatus: o.payment_status === "paid" ? "paid" : "unpaid",
		amount: Number(o.amount_total),
		currency: String(o.currency ?? "").toUpperCase(),
		expiresAt: new Date(o.expires_at * 1000).toISOString(),
		chargeId: typeof o.charge === "string" ? o.charge : null,
		orderId: typeof o.client_reference_id === "string" ? o.client_reference_id : null,
	};
}

export interface CardGatewayOptions {
	timeoutMs: number;
	/** Further tries after the first, for network errors, timeouts and 5xx only. */
	retries: number;
	retryBaseMs?: number;
	breaker?: CircuitBreaker;
}

type Answer = { kind: "ok"; body: any } | { kind: "refused"; status: number; body: any } | { kind: "unavailable"; reason: string; sent: boolean };

/**
 * The HTTP client of the card payment gateway. Declines are final and never retried; network
 * errors, timeouts and 5xx are retried with exponential backoff, then PROVIDER_UNAVAILABLE; a
 * circuit breaker stops calling a gateway that keeps failing. Every call carries the caller's
 * Idempotency-Key, so a retry can never charge twice.
 */
export class CardGateway {
	readonly breaker: CircuitBreaker;

	constructor(
		private readonly baseUrl: string,
		private readonly opts: CardGatewayOptions,
	) {
		this.breaker = opts.breaker ?? new CircuitBreaker(5, 10000);
	}

	async charge(req: { amount: number; currency: string; token: string; idempotencyKey: string }): Promise<ChargeOutcome> {
		const answer = await this.post("/charges", { amount: req.amount, currency: req.currency, token: req.token }, req.idempotencyKey);
		if (answer.kind === "ok") return { ok: true, chargeId: answer.body.id };
		if (answer.kind === "unavailable") return { ok: false, code: "PROVIDER_UNAVAILABLE", reason: answer.reason, ambiguous: answer.sent };
		const code = answer.body?.error?.code === "insufficient_funds" ? "INSUFFICIENT_FUNDS" : "PAYMENT_DECLINED";
		return { ok: false, code, reason: answer.body?.error?.code ?? `declined (HTTP ${answer.status})` };
	}

	async refund(req: { chargeId: string; amount: number; idempotencyKey: string }): Promise<RefundOutcome> {
		const answer = await this.post("/refunds", { charge: req.chargeId, amount: req.amount }, req.idempotencyKey);
		if (answer.kind === "ok") return { ok: true, refundId: answer.body.id };
		return { ok: false, reason: answer.kind === "unavailable" ? answer.reason : (answer.body?.error?.code ?? `HTTP ${answer.status}`) };
	}

	/** Opens a hosted session for an order; `successUrl` may hold `{SESSION_ID}`. */
	async createSession(req: { orderId: string; amount: number; currency: string; successUrl: string; cancelUrl: string; expiresAt: Date; idempotencyKey: string }): Promise<SessionOutcome> {
		const body = { amount: req.amount, currency: req.currency, success_url: req.successUrl, cancel_url: req.cancelUrl, expires_at: Math.floor(req.expiresAt.getTime() / 1000), client_reference_id: req.orderId };
		return this.sessionAnswer(await this.post("/checkout/sessions", body, req.idempotencyKey));
	}

	/** A session's state as the gateway knows it. */
	async getSession(sessionId: string): Promise<SessionOutcome> {
		return this.sessionAnswer(await this.request("GET", `/checkout/sessions/${encodeURIComponent(sessionId)}`));
	}

	/** Ends an open session (a completed one stays completed: the answer says which). */
	async expireSession(sessionId: string): Promise<SessionOutcome> {
		return this.sessionAnswer(await this.post(`/checkout/sessions/${encodeURIComponent(sessionId)}/expire`, {}, `expire-${sessionId}`));
	}

	private sessionAnswer(answer: Answer): SessionOutcome {
		if (answer.kind === "unavailable") return { ok: false, reason: answer.reason, unavailable: true };
		const session = answer.kind === "ok" ? sessionFromWire(answer.body) : undefined;
		if (!session) return { ok: false, reason: answer.body?.error?.message ?? `unexpected answer (HTTP ${answer.kind === "refused" ? answer.status : 200})`, unavailable: false };
		return { ok: true, session };
	}

	private post(path: string, body: unknown, idempotencyKey: string): Promise<Answer> {
		return this.request("POST", path, body, idempotencyKey);
	}

	/**
	 * One request, tried again on 5xx, timeouts and network errors. The breaker counts requests, not
	 * tries: one that got an answer in the end (tok_flaky's two 503s, then a charge) is a success,
	 * and only one whose every try failed is a failure. Counted by tries, a few flaky cards in flight
	 * together opened the circuit for every other customer's card.
	 */
	private async request(method: "GET" | "POST", path: string, body?: unknown, idempotencyKey?: string): Promise<Answer> {
		const answer = await this.tries(method, path, body, idempotencyKey);
		if (answer.kind === "unavailable" && answer.sent) this.breaker.failure();
		return answer;
	}

	private async tries(method: "GET" | "POST", path: string, body?: unknown, idempotencyKey?: string): Promise<Answer> {
		let reason = "";
		let sent = false;
		for (let attempt = 0; attempt <= this.opts.retries; attempt++) {
			if (attempt > 0) await sleep(backoffDelay(attempt, this.opts.retryBaseMs ?? 200, 5000));
			// Open (or half-open with its trial taken): no further try; what was sent already stays a failed request.
			if (!this.breaker.allow()) return { kind: "unavailable", reason: sent ? reason : "circuit open: the gateway failed too often", sent };
			sent = true;
			try {
				const res = await fetch(`${this.baseUrl}${path}`, {
					method,
					headers: idempotencyKey ? { "Content-Type": "application/json", "Idempotency-Key": idempotencyKey } : {},
					body: body === undefined ? undefined : JSON.stringify(body),
					signal: AbortSignal.timeout(this.opts.timeoutMs),
				});
				const answer = await res.json().catch(() => ({}));
				if (res.status >= 500) {
					reason = `HTTP ${res.status}`;
					continue;
				}
				this.breaker.success();
				return res.ok ? { kind: "ok", body: answer } : { kind: "refused", status: res.status, body: answer };
			} catch (err) {
				reason = (err as Error).name === "TimeoutError" ? `no answer in ${this.opts.timeoutMs} ms` : (err as Error).message;
			}
		}
		return { kind: "unavailable", reason, sent };
	}
}
