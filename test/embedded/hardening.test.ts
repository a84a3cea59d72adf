/**
 * The HTTP edge against bad input, generated from the served OpenAPI document with fast-check: every
 * operation gets malformed variants (poisoned strings, broken JSON, wrong media types and encodings,
 * absurd query values, odd path segments) and answers each with a 4xx in the error shape, in time,
 * changing nothing. Then the cases the generator stands for, one by one: control characters and
 * unpaired surrogates, encodings, `+json` types, bounds, short bodies, huge headers, 404 codes.
 */
import net from "node:net";
import { gzipSync, brotliCompressSync, deflateSync } from "node:zlib";
import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { startTestNode, tempDir, type TestNode } from "../../scripts/harness/node";
import { tokenFor, type HttpResult } from "../../scripts/harness/http";
import { checkedApi, type AnswerCheck, type CheckedApi } from "../helpers/openapi";

const data = tempDir();
let node: TestNode;
const admin = tokenFor("ops", "admin");
const alice = tokenFor("alice");
/** Requests whose answers are also checked against the served OpenAPI document. */
let api: CheckedApi;
let checkAnswer: AnswerCheck;

beforeAll(async () => {
	node = await startTestNode({ DATA_DIR: data.dir, RATE_LIMIT: "1000000", HTTP_HEADERS_TIMEOUT_MS: "1000", HTTP_REQUEST_TIMEOUT_MS: "1500" });
	({ api, check: checkAnswer } = await checkedApi(node.url));
});
afterAll(async () => {
	await node?.stop();
	data.remove();
});

/** What any request could have changed: orders, stock, promotions, a wallet, notifications. */
async function stateFingerprint() {
	const [analytics, stock, promotions, wallet, ledger, notes] = await Promise.all([
		api("GET", "/api/analytics/orders", { token: admin }),
		api("GET", "/api/inventory?pageSize=100", { token: admin }),
		api("GET", "/api/promotions", { token: admin }),
		api("GET", "/api/wallet", { token: alice }),
		api("GET", "/api/wallet/transactions", { token: alice }),
		api("GET", "/api/notifications", { token: alice }),
	]);
	return {
		orders: analytics.body.totalOrders,
		stock: stock.body.rows.map((r: { sku: string; name: string; onHand: number }) => `${r.sku}:${r.name}:${r.onHand}`).sort(),
		promotions: promotions.body.total,
		balance: wallet.body.balance,
		ledger: ledger.body.total,
		unread: notes.body.rows.filter((n: { isRead: boolean }) => !n.isRead).length,
	};
}

/** Strings no field accepts: the gateway refuses them wherever they stand. */
const poison = fc.constantFrom<unknown>("a\u0000b", "\u0000", "x\u0007y", "\u001b[31m", "\ud800", "tail\udfff", { "key\u0000": 1 }, ["\u0001"]);
const oddSegment = fc.oneof(fc.uuid(), fc.constantFrom("x%00y", "%ZZ", "..%2F..%2Fetc", "a".repeat(300), "%F0%9F", "-1", "%ED%A0%80", "1e999"));
const oddQueryValue = fc.oneof(
	fc.constantFrom("1e18", "1000000000000000000", "-1", "0", "abc", "%00", "9".repeat(40), "%ED%A0%80", "1.5", "NaN", "%"),
	fc.string({ maxLength: 20 }).map(encodeURIComponent),
);
/** Bodies that are not the JSON object of the operation, whatever the operation. */
const brokenRaw = fc.record({
	raw: fc.constantFrom('{"items": [', "[]", '"text"', "null", "{}garbage", '{"a":1}', "\u0000", "\xff\xfe"),
	type: fc.constantFrom("application/json", "application/merge-patch+json", "text/plain", "application/json; charset=bogus", "application/x-www-form-urlencoded", "application/vnd.api+json"),
	encoding: fc.constantFrom(undefined, "gzip", "br", "deflate", "compress", "gzip, br", "identity"),
});

type Operation = { method: string; path: string; query: string[]; bodyFields: string[]; hasBody: boolean };

it("answers every malformed variant of every operation with a 4xx in the error shape, in time, changing nothing", async () => {
	const product = await api("POST", "/api/products", { token: admin, body: { sku: "HARD-1", name: "Hardened", category: "h", price: 500, stock: 5 } });
	expect(product.status).toBe(201);
	const doc = (await api("GET", "/api/openapi.json")).body as { paths: Record<string, Record<string, any>> };
	const operations: Operation[] = Object.entries(doc.paths)
		.filter(([path]) => path.startsWith("/api/") && path !== "/api/openapi.json" && path !== "/api/docs")
		.flatMap(([path, ops]) =>
			Object.entries(ops).map(([method, op]) => ({
				method: method.toUpperCase(),
				path,
				query: (op.parameters ?? []).filter((p: { in: string }) => p.in === "query").map((p: { name: string }) => p.name),
				bodyFields: Object.keys(op.requestBody?.content?.["application/json"]?.schema?.properties ?? {}),
				hasBody: op.requestBody !== undefined,
			})),
		);
	expect(operations.length).toBeGreaterThanOrEqual(26);
	const before = await stateFingerprint();

	const variant = fc.record({
		op: fc.constantFrom(...operations),
		segment: oddSegment,
		token: fc.constantFrom(admin, alice),
		query: fc.array(oddQueryValue, { minLength: 1, maxLength: 3 }),
		body: fc.oneof(
			// A JSON object over the operation's own fields, at least one of them poisoned.
			fc.record({ kind: fc.constant("poisoned" as const), values: fc.array(fc.oneof(poison, fc.jsonValue({ maxDepth: 2 })), { maxLength: 4 }), poisoned: poison, at: fc.nat() }),
			fc.record({ kind: fc.constant("raw" as const), broken: brokenRaw }),
		),
	});
	const seen: Record<number, number> = {};
	await fc.assert(
		fc.asyncProperty(variant, async ({ op, segment, token, query, body }) => {
			// Path parameters get the odd segment, or the real product for its routes (so the body is what is wrong).
			let path = op.path.replace(/\{(\w+)\}/g, (_, name) => (name === "id" && op.path.startsWith("/api/products") && op.hasBody && body.kind === "poisoned" ? product.body.id : segment));
			// A read is malformed by its query (one value poisoned) or path; one with neither by its token.
			const poisonAt = op.method === "GET" ? query.length % Math.max(1, op.query.length) : -1;
			if (op.query.length) path += "?" + op.query.map((name, i) => `${name}=${i === poisonAt ? "%00" : query[i % query.length]}`).join("&");
			const nothingToBreak = op.method === "GET" && !op.query.length && !op.path.includes("{");
			const headers: Record<string, string> = { Authorization: `Bearer ${nothingToBreak ? "not.a.token" : token}` };
			let payload: Buffer | string | undefined;
			if (op.hasBody && body.kind === "poisoned") {
				const fields = op.bodyFields.length ? op.bodyFields : ["x"];
				const object: Record<string, unknown> = {};
				body.values.forEach((v, i) => (object[fields[i % fields.length]] = v));
				object[fields[body.at % fields.length]] = body.poisoned;
				payload = JSON.stringify(object);
				headers["Content-Type"] = "application/json";
			} else if (body.kind === "raw" && op.method !== "GET") {
				const { raw, type, encoding } = body.broken;
				payload = Buffer.from(raw, "latin1");
				headers["Content-Type"] = type;
				if (encoding) headers["Content-Encoding"] = encoding;
			} else if (op.method !== "GET") {
				payload = "{}";
				headers["Content-Type"] = "text/plain";
			}
			const res = await fetch(`${node.url}${path}`, { method: op.method, headers, body: payload, signal: AbortSignal.timeout(5000) });
			const text = await res.text();
			seen[res.status] = (seen[res.status] ?? 0) + 1;
			if (res.status < 400 || res.status >= 500) throw new Error(`${op.method} ${path} answered ${res.status}: ${text.slice(0, 200)}`);
			const parsed = JSON.parse(text);
			expect(typeof parsed.error.code).toBe("string");
			expect(typeof parsed.error.message).toBe("string");
			checkAnswer(op.method, path, { status: res.status, headers: res.headers, body: parsed, text } as HttpResult);
		}),
		{ numRuns: 400 },
	);
	expect(await stateFingerprint()).toEqual(before);
	expect(Object.keys(seen).length).toBeGreaterThanOrEqual(3); // 400, 404, 415, … — not one answer for everything
}, 180000);

describe("one by one", () => {
	const order = { items: [{ productId: randomUUID(), quantity: 1 }], shippingAddress: { name: "Ada", line1: "1 Main St", city: "Berlin", postalCode: "10115", country: "DE" } };

	it("refuses control characters and unpaired surrogates with the field named", async () => {
		const nul = await api("POST", "/api/orders", { token: alice, body: { ...order, shippingAddress: { ...order.shippingAddress, name: "A\u0000da" } } });
		expect(nul.status).toBe(400);
		expect(nul.body.error).toMatchObject({ code: "VALIDATION_ERROR", details: { fields: [{ field: "shippingAddress.name", type: "string" }] } });
		const surrogate = await api("POST", "/api/cart/validate", { token: alice, raw: '{"items":[{"productId":"\\ud800","quantity":1}]}', headers: { "Content-Type": "application/json" } });
		expect(surrogate.status).toBe(400);
		expect(surrogate.body.error.details.fields[0].field).toBe("items[0].productId");
		const query = await api("GET", "/api/products?search=%00");
		expect(query.status).toBe(400);
		expect(query.body.error.details.fields[0].field).toBe("search");
	});

	it("decodes gzip, deflate and br bodies, and refuses broken or unknown encodings with 4xx", async () => {
		const body = JSON.stringify({ items: [] });
		for (const [encoding, bytes] of [["gzip", gzipSync(body)], ["deflate", deflateSync(body)], ["br", brotliCompressSync(body)]] as const) {
			const res = await fetch(`${node.url}/api/cart/validate`, { method: "POST", headers: { Authorization: `Bearer ${alice}`, "Content-Type": "application/json", "Content-Encoding": encoding }, body: bytes });
			expect(res.status).toBe(200);
			expect(((await res.json()) as { valid: boolean }).valid).toBe(false);
		}
		for (const encoding of ["gzip", "br", "deflate"]) {
			const res = await api("POST", "/api/cart/validate", { token: alice, raw: body, headers: { "Content-Type": "application/json", "Content-Encoding": encoding } });
			expect(res.status).toBe(400);
			expect(res.body.error.code).toBe("INVALID_BODY");
		}
		const unknown = await api("POST", "/api/cart/validate", { token: alice, raw: body, headers: { "Content-Type": "application/json", "Content-Encoding": "compress" } });
		expect(unknown.status).toBe(415);
		// A small bomb: the limit applies to the decoded body.
		const bomb = await fetch(`${node.url}/api/cart/validate`, { method: "POST", headers: { Authorization: `Bearer ${alice}`, "Content-Type": "application/json", "Content-Encoding": "gzip" }, body: gzipSync(`{"pad":"${"x".repeat(5_000_000)}"}`) });
		expect(bomb.status).toBe(413);
	});

	it("parses every +json media type as JSON (a merge patch changes what it says)", async () => {
		const created = await api("POST", "/api/products", { token: admin, body: { sku: "MERGE-1", name: "Before", category: "m", price: 100, stock: 1 } });
		const patched = await api("PATCH", `/api/products/${created.body.id}`, { token: admin, raw: JSON.stringify({ name: "After" }), headers: { "Content-Type": "application/merge-patch+json" } });
		expect(patched.status).toBe(200);
		expect(patched.body.name).toBe("After");
	});

	it("bounds every numeric query parameter", async () => {
		for (const path of ["/api/products?page=1000000000000000000", "/api/products?minPrice=1e18", "/api/products?maxPrice=99999999999999", "/api/orders?page=9007199254740993"]) {
			const res = await api("GET", path, { token: admin });
			expect(res.status).toBe(400);
			expect(res.body.error.code).toBe("VALIDATION_ERROR");
		}
	});

	it("tells a missing resource (NOT_FOUND) from an unknown route (ROUTE_NOT_FOUND)", async () => {
		expect((await api("GET", `/api/orders/${randomUUID()}`, { token: alice })).body.error.code).toBe("NOT_FOUND");
		expect((await api("GET", `/api/products/${randomUUID()}`)).body.error.code).toBe("NOT_FOUND");
		expect((await api("PUT", `/api/notifications/${randomUUID()}/read`, { token: alice })).body.error.code).toBe("NOT_FOUND");
		expect((await api("GET", "/api/nothing-here")).body.error.code).toBe("ROUTE_NOT_FOUND");
	});

	/** A raw request on a socket: what it answered (or "" if it closed without a word) and when. */
	const rawRequest = (text: string) =>
		new Promise<{ answer: string; ms: number }>((resolve, reject) => {
			const t0 = Date.now();
			let answer = "";
			const socket = net.connect(Number(new URL(node.url).port), "127.0.0.1", () => socket.write(text));
			socket.on("data", d => (answer += d));
			socket.on("close", () => resolve({ answer, ms: Date.now() - t0 }));
			socket.on("error", reject);
			socket.setTimeout(10000, () => socket.destroy());
		});

	it("answers a body shorter than its Content-Length with 408 in the error shape once the request timeout passes", async () => {
		const { answer, ms } = await rawRequest(`POST /api/cart/validate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${alice}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"items":`);
		expect(answer).toMatch(/^HTTP\/1\.1 408 /);
		expect(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)).error.code).toBe("REQUEST_TIMEOUT");
		expect(ms).toBeLessThan(6000);
	});

	it("answers headers over 16 KB with 431 in the error shape", async () => {
		const { answer } = await rawRequest(`GET /api/products HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20000)}\r\n\r\n`);
		expect(answer).toMatch(/^HTTP\/1\.1 431 /);
		expect(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)).error.code).toBe("HEADERS_TOO_LARGE");
	});
});
