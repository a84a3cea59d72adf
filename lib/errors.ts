import { Errors } from "moleculer";

/**
 * Domain errors carry the HTTP status of SPEC section 2 as `code` and the contract's error code as
 * `type`, so the gateway can render `{error: {code, message, details}}` without guessing.
 */

/** 422: a business rule refused the request (out of stock, insufficient funds, …). */
export class BusinessRuleError extends Errors.MoleculerClientError {
	constructor(type: string, message: string, data?: unknown) {
		super(message, 422, type, data);
		this.name = "BusinessRuleError";
	}
}

/** 404: unknown, or not the caller's (never reveal that another user's resource exists). */
export class NotFoundError extends Errors.MoleculerClientError {
	constructor(what: string, data?: unknown) {
		super(`${what} not found`, 404, "NOT_FOUND", data);
		this.name = "NotFoundError";
	}
}

/** 409: an illegal state transition or a reused idempotency key. */
export class ConflictError extends Errors.MoleculerClientError {
	constructor(type: string, message: string, data?: unknown) {
		super(message, 409, type, data);
		this.name = "ConflictError";
	}
}

/** 501: hosted card payments, switched off in production until PAYMENT_WEBHOOK_SECRET is set. */
export class HostedPaymentsDisabledError extends Errors.MoleculerClientError {
	constructor() {
		super("Hosted payments are off: set PAYMENT_WEBHOOK_SECRET", 501, "HOSTED_PAYMENTS_DISABLED");
		this.name = "HostedPaymentsDisabledError";
	}
}
