import { signToken, type Role } from "../../lib/auth";
import { DEV_JWT_SECRET } from "../../lib/config";
import { Agent, request } from "node:http";

export interface HttpResult<T = any> {
	status: number;
	headers: Headers;
	body: T;
	text: string;
}

export const tokenFor = (sub: string, role: Role = "customer", secret = DEV_JWT_SECRET, ttlSeconds = 3600) => signToken({ sub, role, email: `${sub}@example.com` }, secret, ttlSeconds);

type RequestOptions = { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> };

/** A real HTTP request to a started gateway; the body is sent as JSON unless `raw` is given. */
export async function http<T = any>(
	base: string,
	method: string,
	path: string,
	opts: RequestOptions = {},
): Promise<HttpResult<T>> {
	const { headers, body } = requestOf(opts);
	const res = await fetch(`${base}${path}`, { method, headers, body });
	const text = await res.text();
	return { status: res.status, headers: res.headers, body: jsonOrText(text) as T, text };
}

/** A request's headers and body: the bearer token, and the body as JSON unless `raw` is given. */
function requestOf(opts: RequestOptions): { headers: Record<string, string>; body?: string } {
	const headers: Record<string, string> = { ...opts.headers };
	if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
	if (opts.body === undefined) return { headers, body: opts.raw };
	headers["Content-Type"] ??= "application/json";
	return { headers, body: JSON.stringify(opts.body) };
}

/** The body as JSON, or as the text it is when it is not JSON. */
function jsonOrText(text: string): unknown {
	try {
		return JSON.parse(text);
	} catch {
		return text;
	}
}

type SseEvent = { event: string; data: any };

/** Takes the complete events off the front of `buffer` into `events`; returns what is left (an event still arriving). */
function takeSseEvents(buffer: string, events: SseEvent[]): string {
	let end: number;
	while ((end = buffer.indexOf("\n\n")) >= 0) {
		const block = buffer.slice(0, end);
		buffer = buffer.slice(end + 2);
		const event = /^event: (.*)$/m.exec(block)?.[1];
		const data = /^data: (.*)$/m.exec(block)?.[1];
		if (event && data) events.push({ event, data: JSON.parse(data) });
	}
	return buffer;
}

/** Reads Server-Sent Events until `until` says enough (or the time is up), then closes. */
export async function readEvents(url: string, token: string, until: (events: SseEvent[]) => boolean, timeoutMs = 20000) {
	const abort = new AbortController();
	const timer = setTimeout(() => abort.abort(), timeoutMs);
	const events: SseEvent[] = [];
	try {
		const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` }, signal: abort.signal });
		if (res.status !== 200) return { status: res.status, events, contentType: res.headers.get("content-type") };
		const reader = res.body!.getReader();
		const decoder = new TextDecoder();
		let buffer = "";
		while (!until(events)) {
			const { value, done } = await reader.read();
			if (done) break;
			buffer = takeSseEvents(buffer + decoder.decode(value, { stream: true }), events);
		}
		return { status: res.status, events, contentType: res.headers.get("content-type") };
	} finally {
		clearTimeout(timer);
		abort.abort();
	}
}

/**
 * The load generator's client: `http` and `readEvents` on `node:http` with one keep-alive agent.
 * The benchmark runs on the cores it measures, and fetch's web streams cost it about twice the CPU
 * per checkout (bench/ANALYSIS.md); the tests keep fetch, which is what browsers and users speak.
 */
export const loadClient = (() => {
	const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
	return {
		http<T = any>(base: string, method: string, path: string, opts: RequestOptions = {}): Promise<Omit<HttpResult<T>, "headers">> {
			const { headers, body } = requestOf(opts);
			if (body !== undefined) headers["Content-Length"] = String(Buffer.byteLength(body));
			return new Promise((resolve, reject) => {
				const req = request(`${base}${path}`, { method, headers, agent }, res => {
					const chunks: Buffer[] = [];
					res.on("data", (chunk: Buffer) => chunks.push(chunk)).on("error", reject);
					res.on("end", () => {
						const text = Buffer.concat(chunks).toString("utf8");
						resolve({ status: res.statusCode!, body: jsonOrText(text) as T, text });
					});
				});
				req.on("error", reject).end(body);
			});
		},
		/** As `readEvents`, but rejects when the time is up. */
		readEvents(url: string, token: string, until: (events: SseEvent[]) => boolean, timeoutMs = 20000): Promise<{ status: number; events: SseEvent[] }> {
			return new Promise((resolve, reject) => {
				const events: SseEvent[] = [];
				const req = request(url, { headers: { Authorization: `Bearer ${token}` }, agent }, res => {
					if (res.statusCode !== 200) return void (res.resume(), end(), resolve({ status: res.statusCode!, events }));
					let buffer = "";
					const done = () => (end(), resolve({ status: 200, events }));
					res.setEncoding("utf8");
					res.on("data", (chunk: string) => {
						buffer = takeSseEvents(buffer + chunk, events);
						if (until(events)) done();
					});
					res.on("end", done);
				});
				const timer = setTimeout(() => (end(), reject(new Error(`no end of the event stream within ${timeoutMs} ms`))), timeoutMs);
				const end = () => (clearTimeout(timer), req.destroy());
				req.on("error", err => (clearTimeout(timer), reject(err))).end();
			});
		},
	};
})();
