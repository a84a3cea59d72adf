/**
 * The development sign-in (POST /api/dev/token) exists only outside production while the
 * development JWT secret is in use: with NODE_ENV=production, or with a secret of the shop's own,
 * it answers 404 and the served OpenAPI document does not list it.
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
