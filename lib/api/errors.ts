import { Errors } from "moleculer";
import ApiGateway from "moleculer-web";

/** The one error body of SPEC section 2. */
export interface ErrorBody {
	error: { code: string; message: string; details?: unknown };
}

export class ApiError extends Errors.MoleculerClientError {
	constructor(status: number, code: string, message: string, details?: unknown) {
		super(message, status, code, details);
		this.name = "ApiError";
	}
}

/** Moleculer's own failures that mean "a dependency is down or busy": 503, never a stack trace. */
const UNAVAILABLE: Record<string, string> = {
	SERVICE_NOT_FOUND: "SERVICE_UNAVAILABLE",
	SERVICE_NOT_AVAILABLE: "SERVICE_UNAVAILABLE",
	REQUEST_TIMEOUT: "REQUEST_TIMEOUT",
	REQUEST_SKIPPED: "REQUEST_TIMEOUT",
	REQUEST_REJECTED: "SERVICE_UNAVAILABLE",
	QUEUE_FULL: "OVERLOADED",
	LOCK_TIMEOUT: "LOCK_TIMEOUT",
	PROVIDER_UNAVAILABLE: "PROVIDER_UNAVAILABLE",
	NOT_READY: "NOT_READY",
};

/** body-parser's failures, by its `type`. */
const BODY_ERRORS: Record<string, [number, string, string]> = {
	"entity.parse.failed": [400, "INVALID_JSON", "The body is not valid JSON"],
	"entity.too.large": [413, "PAYLOAD_TOO_LARGE", "The body is too large"],
	"encoding.unsupported": [415, "UNSUPPORTED_MEDIA_TYPE", "Unsupported content encoding"],
	"charset.unsupported": [415, "UNSUPPORTED_MEDIA_TYPE", "Unsupported charset"],
	"request.aborted": [400, "REQUEST_ABORTED", "The request was aborted"],
	"stream.encoding.set": [400, "BAD_REQUEST", "Bad request stream"],
};

/** moleculer-web's HTTP errors that keep their status but get the contract's codes. */
const WEB_ERRORS: Record<string, [number, string]> = {
	NO_TOKEN: [401, "UNAUTHORIZED"],
	INVALID_TOKEN: [401, "UNAUTHORIZED"],
	ERR_HAS_NO_ACCESS: [403, "FORBIDDEN"],
	RATE_LIMIT_EXCEEDED: [429, "RATE_LIMITED"],
	UNSUPPORTED_MEDIA_TYPE: [415, "UNSUPPORTED_MEDIA_TYPE"],
};

interface FieldError {
	field?: string;
	message?: string;
	type?: string;
}

/**
 * Any error → the status and body the client gets (SPEC section 2): validation 400 with the fields,
 * business refusals with their own status and code, dependency trouble 503, the rest 500 with a
 * plain message. Never a stack trace.
 */
export function toHttpError(err: unknown): { status: number; body: ErrorBody; internal: boolean } {
	const e = (err ?? {}) as Errors.MoleculerError & { status?: number; type?: string; expose?: boolean };
	const body = (code: string, message: string, details?: unknown): ErrorBody => ({ error: details === undefined ? { code, message } : { code, message, details } });

	// moleculer-web's own 404 means no route matched; a service's NOT_FOUND is a missing resource.
	if (err instanceof ApiGateway.Errors.NotFoundError) return { status: 404, body: body("ROUTE_NOT_FOUND", "No such route"), internal: false };
	// zlib's own failure codes: a body whose Content-Encoding does not match its bytes. moleculer-web
	// rewraps the decoder's error and loses its 400, so it is recognised by its code.
	if (typeof e.code === "string" && /^(Z_[A-Z_]+|ERR__ERROR_[A-Z0-9_]+|ERR_BROTLI_[A-Z_]+)$/.test(e.code)) {
		return { status: 400, body: body("INVALID_BODY", "The body could not be decoded with its Content-Encoding"), internal: false };
	}
	if (e.type && BODY_ERRORS[e.type]) {
		const [status, code, message] = BODY_ERRORS[e.type];
		return { status, body: body(code, message), internal: false };
	}
	if (e.type === "VALIDATION_ERROR" && Array.isArray(e.data)) {
		const fields = (e.data as FieldError[]).map(d => ({ field: d.field, message: d.message, type: d.type }));
		return { status: 400, body: body("VALIDATION_ERROR", "The request is not valid", { fields }), internal: false };
	}
	if (e.type && UNAVAILABLE[e.type]) {
		return { status: 503, body: body(UNAVAILABLE[e.type], e.message || "A dependency is unavailable"), internal: false };
	}
	if (e.type && WEB_ERRORS[e.type]) {
		const [status, code] = WEB_ERRORS[e.type];
		return { status, body: body(code, e.message), internal: false };
	}
	const status = typeof e.code === "number" ? e.code : typeof e.status === "number" ? e.status : 500;
	if (status >= 400 && status < 500) {
		return { status, body: body(e.type || "BAD_REQUEST", e.message || "Bad request", e.data ?? undefined), internal: false };
	}
	// 501: a feature this deployment has switched off (named in the message), not a fault.
	if (status === 503 || status === 501) return { status, body: body(e.type || "SERVICE_UNAVAILABLE", e.message || "Service unavailable"), internal: false };
	return { status: 500, body: body("INTERNAL_ERROR", "Something went wrong on our side; the request ID identifies it in the logs"), internal: true };
}
