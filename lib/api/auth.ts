import jwt from "jsonwebtoken";
import { createSecretKey, type KeyObject } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { Role } from "../auth";
import { ApiError } from "./errors";
import { DEV_JWT_SECRET } from "../config";
import { RecentMap } from "../recent-map";

export interface ApiUser {
	sub: string;
	role: Role;
	name?: string;
	email?: string;
}

/** The bearer token of a request (or, where a browser cannot set headers, its `access_token`). */
export function tokenOf(headers: IncomingHttpHeaders, query?: Record<string, unknown>): string | undefined {
	const header = headers.authorization;
	if (typeof header === "string") {
		const m = /^Bearer\s+(\S+)$/i.exec(header.trim());
		return m ? m[1] : undefined;
	}
	return typeof query?.access_token === "string" ? query.access_token : undefined;
}

/**
 * The secret as a KeyObject, made once: given a string, jsonwebtoken first tries (and fails) to
 * read it as a public key on every request, a measurable cost under load.
 */
const keys = new Map<string, KeyObject>();
function keyFor(secret: string): KeyObject {
	let key = keys.get(secret);
	if (!key) keys.set(secret, (key = createSecretKey(Buffer.from(secret, "utf8"))));
	return key;
}

/**
 * Tokens verified lately, by the whole token string, with the secret they were verified under and
 * the time they stop being valid: a customer sends the same token with each request (three per
 * checkout), and its HMAC and JSON were 3 % of the embedded node's thread under load. A hit is
 * checked against its expiry as jsonwebtoken checks it; a token that differs in any byte, or a
 * verification under another secret, is verified anew.
 */
const verified = new RecentMap<string, Verified>(10_000, 60_000);
interface Verified {
	secret: string;
	user: ApiUser;
	expiresAt: number;
}

/** Verifies an HS256 token and its claims; 401 with a reason otherwise. */
export function verifyToken(token: string | undefined, secret: string, now = Date.now()): ApiUser {
	if (!token) throw new ApiError(401, "UNAUTHORIZED", "A Bearer token is required");
	const hit = verified.get(token);
	if (hit && hit.secret === secret && now < hit.expiresAt) return hit.user;
	const entry = checkClaims(token, secret, now);
	verified.set(token, entry);
	return entry.user;
}

function checkClaims(token: string, secret: string, now: number): Verified {
	let claims: jwt.JwtPayload;
	try {
		claims = jwt.verify(token, keyFor(secret), { algorithms: ["HS256"], clockTimestamp: Math.floor(now / 1000) }) as jwt.JwtPayload;
	} catch (err) {
		const expired = (err as Error).name === "TokenExpiredError";
		throw new ApiError(401, "UNAUTHORIZED", expired ? "The token has expired" : "The token is not valid");
	}
	const { sub, role, name, email, exp } = claims;
	if (typeof sub !== "string" || sub.length === 0 || sub.length > 200) throw new ApiError(401, "UNAUTHORIZED", "The token has no valid subject");
	if (role !== "customer" && role !== "admin") throw new ApiError(401, "UNAUTHORIZED", "The token has no valid role");
	const user = { sub, role, name: typeof name === "string" ? name : undefined, email: typeof email === "string" ? email : undefined };
	// jsonwebtoken refuses a token once the clock's second reaches exp; no exp, valid while remembered.
	return { secret, user, expiresAt: typeof exp === "number" ? exp * 1000 : Number.POSITIVE_INFINITY };
}

/**
 * The development sign-in (POST /api/dev/token) answers only outside production and while the
 * development JWT secret is in use: a token it mints is worth nothing anywhere else.
 */
export const devSignIn = (config: { production: boolean; jwtSecret: string }) => !config.production && config.jwtSecret === DEV_JWT_SECRET;
