import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * Signed webhooks, Stripe's scheme: the header `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`
 * over the raw body as sent. Several `v1` may appear (a secret being rotated); any one matching
 * is enough. A timestamp outside the tolerance is refused, so a captured request cannot be
 * replayed later.
 */

export const SIGNATURE_HEADER = "Gateway-Signature";
export const SIGNATURE_TOLERANCE_S = 300;

const hmac = (secret: string, t: number, body: string | Buffer) => createHmac("sha256", secret).update(`${t}.`).update(body).digest("hex");

/** The signature header's value for `body`, signed at `t` (unix seconds). */
export function signPayload(secret: string, body: string | Buffer, t = Math.floor(Date.now() / 1000)): string {
	return `t=${t},v1=${hmac(secret, t, body)}`;
}

export type SignatureCheck = { ok: true; t: number } | { ok: false; problem: "MALFORMED" | "STALE" | "MISMATCH" };

/** Whether `header` signs `body` with `secret` within `toleranceS` of `nowS`. */
export function verifySignature(header: string | undefined, body: string | Buffer, secret: string, nowS = Math.floor(Date.now() / 1000), toleranceS = SIGNATURE_TOLERANCE_S): SignatureCheck {
	if (!header || header.length > 2000) return { ok: false, problem: "MALFORMED" };
	let t: number | undefined;
	const v1: string[] = [];
	for (const part of header.split(",")) {
		const [key, value, ...rest] = part.trim().split("=");
		if (value === undefined || rest.length > 0) return { ok: false, problem: "MALFORMED" };
		if (key === "t") t = /^\d{1,12}$/.test(value) ? Number(value) : NaN;
		else if (key === "v1") v1.push(value);
	}
	if (t === undefined || !Number.isFinite(t) || v1.length === 0) return { ok: false, problem: "MALFORMED" };
	if (Math.abs(nowS - t) > toleranceS) return { ok: false, problem: "STALE" };
	const expected = Buffer.from(hmac(secret, t, body), "hex");
	const matches = v1.some(sig => /^[0-9a-f]{64}$/i.test(sig) && timingSafeEqual(Buffer.from(sig, "hex"), expected));
	return matches ? { ok: true, t } : { ok: false, problem: "MISMATCH" };
}
