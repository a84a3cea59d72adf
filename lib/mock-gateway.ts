/**
 * A Stripe-like card payment gateway for development and tests (SPEC section 6): a real HTTP
 * server with test tokens, idempotency keys, refunds and a charge listing.
 *
 *   POST /charges  {amount, currency, token}   Idempotency-Key required
 *   POST /refunds  {charge, amount?}           Idempotency-Key required
 *   GET  /charges                              every charge and its refunds
 *
 * Tokens: tok_visa authorizes; tok_chargeDeclined → 402 card_declined; tok_insufficientFunds →
 * 402 insufficient_funds; tok_flaky → 503 twice per key, then authorizes; tok_timeout never
 * answers; tok_refundFail authorizes but its refunds answer 503; tok_slow charges at once but holds
 * every answer for its key until 2.5 s after the first request (a charge the client may give up on).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createHash, randomBytes } from "node:crypto";

interface Charge {
	id: string;
	amount: number;
	currency: string;
	token: string;
	status: "succeeded";
	refunded: number;
	idempotencyKey: string;
	createdAt: string;
	refunds: Array<{ id: string; amount: number; idempotencyKey: string }>;
}

interface Stored {
	fingerprint: string;
	status: number;
	body: unknown;
}

export interface MockGateway {
	url: string;
	charges(): Charge[];
	/** Every POST received, in order: how often a key was tried. */
	requests(): Array<{ path: string; key: string }>;
	close(): Promise<void>;
}

const id = (prefix: string) => `${prefix}_${randomBytes(12).toString("hex")}`;
const fingerprint = (body: unknown) => createHash("sha256").update(JSON.stringify(body)).digest("hex");

export async function startMockGateway(port = 0, host = "127.0.0.1"): Promise<MockGateway> {
	const charges = new Map<string, Charge>();
	const answered = new Map<string, Stored>(); // idempotency key → the final answer
	const flakyAttempts = new Map<string, number>();
	const hanging = new Set<http.ServerResponse>();
	const requests: Array<{ path: string; key: string }> = [];
	const slowUntil = new Map<string, number>(); // tok_slow: key → when its answers may leave

	const send = (res: http.ServerResponse, status: number, body: unknown) => {
		res.writeHead(status, { "Content-Type": "application/json" });
		res.end(JSON.stringify(body));
	};
	const error = (code: string, message: string, type = "invalid_request_error") => ({ error: { type, code, message } });

	function charge(key: string, body: any): [number, unknown] | "hang" | "flaky" {
		const { amount, currency, token } = body ?? {};
		if (!Number.isSafeInteger(amount) || amount <= 0) return [400, error("invalid_amount", "amount must be a positive integer of minor units")];
		if (typeof currency !== "string" || !/^[A-Za-z]{3}$/.test(currency)) return [400, error("invalid_currency", "currency must be an ISO 4217 code")];
		switch (token) {
			case "tok_timeout":
				return "hang";
			case "tok_flaky": {
				const n = (flakyAttempts.get(key) ?? 0) + 1;
				flakyAttempts.set(key, n);
				if (n <= 2) return "flaky";
				break;
			}
			case "tok_chargeDeclined":
				return [402, error("card_declined", "Your card was declined.", "card_error")];
			case "tok_insufficientFunds":
				return [402, error("insufficient_funds", "Your card has insufficient funds.", "card_error")];
			case "tok_visa":
			case "tok_refundFail":
			case "tok_slow":
				break;
			default:
				return [400, error("invalid_token", `Unknown card token ${String(token)}`)];
		}
		const c: Charge = { id: id("ch"), amount, currency: currency.toUpperCase(), token, status: "succeeded", refunded: 0, idempotencyKey: key, createdAt: new Date().toISOString(), refunds: [] };
		charges.set(c.id, c);
		return [201, { id: c.id, object: "charge", amount: c.amount, currency: c.currency, status: c.status }];
	}

	function refund(key: string, body: any): [number, unknown] | "flaky" {
		const c = charges.get(body?.charge);
		if (!c) return [404, error("resource_missing", `No such charge: ${String(body?.charge)}`)];
		if (c.token === "tok_refundFail") return "flaky";
		const amount = body.amount ?? c.amount - c.refunded;
		if (!Number.isSafeInteger(amount) || amount <= 0 || amount > c.amount - c.refunded) return [400, error("invalid_amount", "refund amount exceeds what is left to refund")];
		const r = { id: id("re"), amount, idempotencyKey: key };
		c.refunds.push(r);
		c.refunded += amount;
		return [201, { id: r.id, object: "refund", charge: c.id, amount, status: "succeeded" }];
	}

	const server = http.createServer((req, res) => {
		let raw = "";
		req.on("data", d => (raw += d));
		req.on("end", () => {
			if (req.method === "GET" && req.url === "/charges") return send(res, 200, { data: [...charges.values()] });
			if (req.method === "GET" && req.url === "/health") return send(res, 200, { status: "ok" });
			if (req.method !== "POST" || (req.url !== "/charges" && req.url !== "/refunds")) return send(res, 404, error("not_found", "No such route"));
			const key = req.headers["idempotency-key"];
			requests.push({ path: req.url, key: String(key ?? "") });
			if (typeof key !== "string" || key.length === 0) return send(res, 400, error("idempotency_key_missing", "An Idempotency-Key header is required"));
			let body: unknown;
			try {
				body = JSON.parse(raw || "{}");
			} catch {
				return send(res, 400, error("invalid_json", "The body is not JSON"));
			}
			const scopedKey = `${req.url}:${key}`;
			const print = fingerprint(body);
			if ((body as { token?: string })?.token === "tok_slow" && !slowUntil.has(scopedKey)) slowUntil.set(scopedKey, Date.now() + 2500);
			const hold = Math.max(0, (slowUntil.get(scopedKey) ?? 0) - Date.now());
			const reply = (status: number, answer: unknown) => (hold > 0 ? setTimeout(() => send(res, status, answer), hold) : send(res, status, answer));
			const previous = answered.get(scopedKey);
			if (previous) {
				if (previous.fingerprint !== print) return send(res, 400, error("idempotency_key_reused", "Keys are for one request body only"));
				return reply(previous.status, previous.body);
			}
			const outcome = req.url === "/charges" ? charge(scopedKey, body) : refund(scopedKey, body);
			if (outcome === "hang") {
				hanging.add(res);
				res.on("close", () => hanging.delete(res));
				return;
			}
			if (outcome === "flaky") return send(res, 503, error("service_unavailable", "Try again later", "api_error"));
			const [status, answer] = outcome;
			answered.set(scopedKey, { fingerprint: print, status, body: answer });
			reply(status, answer);
		});
	});
	await new Promise<void>((resolve, reject) => {
		server.once("error", reject);
		server.listen(port, host, () => resolve());
	});
	const address = server.address() as AddressInfo;
	return {
		url: `http://${host}:${address.port}`,
		charges: () => [...charges.values()],
		requests: () => [...requests],
		close: () =>
			new Promise<void>(resolve => {
				for (const res of hanging) res.destroy();
				server.closeAllConnections();
				server.close(() => resolve());
			}),
	};
}
