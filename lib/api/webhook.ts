import type { ErrorBody } from "./errors";
import { verifySignature } from "../webhook-signature";

/** A gateway webhook that passed its checks: the event's id, type and object. */
export interface WebhookEvent {
	id: string;
	type: string;
	object: unknown;
}

/**
 * Reads a payment gateway webhook as sent (the raw body, since the signature covers its bytes):
 * a missing or malformed signature or body is 400, a wrong or stale signature 401, and only a
 * signed, well-formed event comes through.
 */
export function readWebhook(signature: string | undefined, raw: Buffer, secret: string, nowS?: number): { ok: true; event: WebhookEvent } | { ok: false; status: number; body: ErrorBody } {
	const refuse = (status: number, code: string, message: string) => ({ ok: false as const, status, body: { error: { code, message } } });
	const check = verifySignature(signature, raw, secret, nowS);
	if (!check.ok) {
		if (check.problem === "MALFORMED") return refuse(400, "WEBHOOK_SIGNATURE_MALFORMED", "The Gateway-Signature header is missing or not t=<unix>,v1=<hex>");
		if (check.problem === "STALE") return refuse(401, "WEBHOOK_SIGNATURE_STALE", "The signature's timestamp is outside the tolerance (5 minutes)");
		return refuse(401, "WEBHOOK_SIGNATURE_INVALID", "The signature does not match the body");
	}
	let event: any;
	try {
		event = JSON.parse(raw.toString("utf8"));
	} catch {
		return refuse(400, "INVALID_JSON", "The body is not valid JSON");
	}
	if (!event || typeof event !== "object" || typeof event.id !== "string" || !event.id || event.id.length > 200 || typeof event.type !== "string" || !event.type || event.type.length > 200) {
		return refuse(400, "VALIDATION_ERROR", "A webhook event needs an id and a type");
	}
	return { ok: true, event: { id: event.id, type: event.type, object: event.data?.object } };
}
