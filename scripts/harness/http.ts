import { signToken, type Role } from "../../lib/auth";
import { DEV_JWT_SECRET } from "../../lib/config";

export interface HttpResult<T = any> {
	status: number;
	headers: Headers;
	body: T;
	text: string;
}

export const tokenFor = (sub: string, role: Role = "customer", secret = DEV_JWT_SECRET, ttlSeconds = 3600) => signToken({ sub, role, email: `${sub}@example.com` }, secret, ttlSeconds);

/** A real HTTP request to a started gateway; the body is sent as JSON unless `raw` is given. */
export async function http<T = any>(
	base: string,
	method: string,
	path: string,
	opts: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
): Promise<HttpResult<T>> {
	const headers: Record<string, string> = { ...opts.headers };
	if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
	let body: string | undefined = opts.raw;
	if (opts.body !== undefined) {
		body = JSON.stringify(opts.body);
		headers["Content-Type"] ??= "application/json";
	}
	const res = await fetch(`${base}${path}`, { method, headers, body });
	const text = await res.text();
	let parsed: unknown = text;
	try {
		parsed = JSON.parse(text);
	} catch {
		// not JSON: keep the text
	}
	return { status: res.status, headers: res.headers, body: parsed as T, text };
}

/** Reads Server-Sent Events until `until` says enough (or the time is up), then closes. */
export async function readEvents(url: string, token: string, until: (events: Array<{ event: string; data: any }>) => boolean, timeoutMs = 20000) {
	const abort = new AbortController();
	const timer = setTimeout(() => abort.abort(), timeoutMs);
	const events: Array<{ event: string; data: any }> = [];
	try {
		const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` }, signal: abort.signal });
		if (res.status !== 200) return { status: res.status, events, contentType: res.headers.get("content-type") };
		const reader = res.body!.getReader();
		const decoder = new TextDecoder();
		let buffer = "";
		while (!until(events)) {
			const { value, done } = await reader.read();
			if (done) break;
			buffer += decoder.decode(value, { stream: true });
			let end: number;
			while ((end = buffer.indexOf("\n\n")) >= 0) {
				const block = buffer.slice(0, end);
				buffer = buffer.slice(end + 2);
				const event = /^event: (.*)$/m.exec(block)?.[1];
				const data = /^data: (.*)$/m.exec(block)?.[1];
				if (event && data) events.push({ event, data: JSON.parse(data) });
			}
		}
		return { status: res.status, events, contentType: res.headers.get("content-type") };
	} finally {
		clearTimeout(timer);
		abort.abort();
	}
}
