/**
 * What production takes away: the development sign-in (POST /api/dev/token) exists only outside
 * production while the development JWT secret is in use — with NODE_ENV=production, or with a
 * secret of the shop's own, it answers 404 and the served OpenAPI document does not list it — and
 * hosted payments stay off (501) until PAYMENT_WEBHOOK_SECRET is set.
 */
import { randomBytes } from "node:crypto";
import { startTestNode, type TestNode } from "../../scripts/harness/node";
import { http } from "../../scripts/harness/http";

describe.each([
	["in production", { NODE_ENV: "production", JWT_SECRET: randomBytes(24).toString("hex") }],
	["with the shop's own secret", { JWT_SECRET: randomBytes(24).toString("hex") }],
])("the development sign-in %s", (_what, env) => {
	let node: TestNode;
	beforeAll(async () => {
		node = await startTestNode({ ...env, SERVICES: "gateway" });
	});
	afterAll(() => node?.stop());

	it("is absent: 404, and not in the OpenAPI document", async () => {
		const res = await http(node.url, "POST", "/api/dev/token", { body: { sub: "mallory", role: "admin" } });
		expect(res.status).toBe(404);
		expect(res.body.error.code).toBe("ROUTE_NOT_FOUND");
		expect(res.text).not.toContain("token\":\"ey");
		const doc = (await http(node.url, "GET", "/api/openapi.json")).body;
		expect(doc.paths["/api/dev/token"]).toBeUndefined();
		expect(doc.paths["/api/orders"]).toBeDefined();
	});
});

it("keeps hosted payments off in production without PAYMENT_WEBHOOK_SECRET: the webhook answers 501 naming the variable", async () => {
	const node = await startTestNode({ NODE_ENV: "production", JWT_SECRET: randomBytes(24).toString("hex"), SERVICES: "gateway" });
	try {
		const res = await http(node.url, "POST", "/api/webhooks/payment-gateway", { raw: "{}", headers: { "Content-Type": "application/json", "Gateway-Signature": "t=1,v1=00" } });
		expect(res.status).toBe(501);
		expect(res.body.error).toEqual({ code: "HOSTED_PAYMENTS_DISABLED", message: expect.stringContaining("PAYMENT_WEBHOOK_SECRET") });
	} finally {
		await node.stop();
	}
});
