/**
 * The gateway's input policy, as small pure pieces: what a string may hold, which query parameters
 * are secrets, and the error answer for a request Node's HTTP parser refuses before any route runs.
 */
import { STATUS_CODES } from "node:http";
import type { ErrorBody } from "./errors";

/** C0 controls other than tab, line feed and carriage return, and DEL: never meaningful in this API's text. */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/;

export interface FieldProblem {
	field: string;
	message: string;
	type: "string";
}

/**
 * The first string (value or key) in `value` that PostgreSQL or a client could not keep as text: a
 * control character (a NUL reaches PostgreSQL as an error) or an unpaired UTF-16 surrogate.
 */
export function badText(value: unknown, field = ""): FieldProblem | undefined {
	const check = (s: string, where: string): FieldProblem | undefined => {
		if (CONTROL.test(s)) return { field: where, message: `The '${where}' field contains a control character`, type: "string" };
		if (!s.isWellFormed()) return { field: where, message: `The '${where}' field is not valid Unicode (an unpaired surrogate)`, type: "string" };
		return undefined;
	};
	if (typeof value === "string") return check(value, field || "body");
	if (Array.isArray(value)) {
		for (let i = 0; i < value.length; i++) {
			const found = badText(value[i], `${field}[${i}]`);
			if (found) return found;
		}
		return undefined;
	}
	if (value && typeof value === "object") {
		for (const [key, v] of Object.entries(value)) {
			const where = field ? `${field}.${key}` : key;
			const found = check(key, where) ?? badText(v, where);
			if (found) return found;
		}
	}
	return undefined;
}

/** Query parameters whose values are credentials: kept out of URLs that get logged or traced. */
const SECRET_NAME = /token|secret|password|passwd|api[-_]?key|signature|auth/i;

/** `url` with the values of secret-named query parameters replaced by `[REDACTED]`. */
export function redactUrl(url: string): string {
	const q = url.indexOf("?");
	if (q < 0) return url;
	const pairs = url.slice(q + 1).split("&").map(pair => {
		const eq = pair.indexOf("=");
		const name = eq < 0 ? pair : pair.slice(0, eq);
		let decoded = name;
		try {
			decoded = decodeURIComponent(name);
		} catch {
			// a malformed name is left as it is
		}
		return eq >= 0 && SECRET_NAME.test(decoded) ? `${name}=[REDACTED]` : pair;
	});
	return `${url.slice(0, q)}?${pairs.join("&")}`;
}

/** `params` with the values of secret-named fields (card tokens, passwords, …) replaced, one level deep. */
export function redactSecrets<T>(params: T): T {
	if (!params || typeof params !== "object" || Array.isArray(params)) return params;
	return Object.fromEntries(Object.entries(params).map(([k, v]) => [k, SECRET_NAME.test(k) && v !== undefined && v !== null ? "[REDACTED]" : v])) as T;
}

/** Node's parser errors for a request no handler will see: the status and code the client gets. */
export function clientErrorAnswer(code: string | undefined): { status: number; body: ErrorBody } {
	switch (code) {
		case "HPE_HEADER_OVERFLOW":
			return { status: 431, body: { error: { code: "HEADERS_TOO_LARGE", message: "The request headers are too large" } } };
		case "ERR_HTTP_REQUEST_TIMEOUT":
		case "ERR_HTTP_HEADERS_TIMEOUT":
			return { status: 408, body: { error: { code: "REQUEST_TIMEOUT", message: "The request did not arrive in time" } } };
		default:
			return { status: 400, body: { error: { code: "BAD_REQUEST", message: "The request is not valid HTTP" } } };
	}
}

/** The raw HTTP/1.1 response for a socket whose request was refused by the parser. */
export function rawResponse(status: number, body: ErrorBody): string {
	const json = JSON.stringify(body);
	return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(json)}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${json}`;
}
