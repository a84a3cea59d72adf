import jwt from "jsonwebtoken";
import { verifyToken } from "../../lib/api/auth";

const SECRET = "a-secret-of-sufficient-length-1";
const sign = (claims: Record<string, unknown>, secret = SECRET) => jwt.sign(claims, secret, { algorithm: "HS256" });
const unauthorized = (message: RegExp) => expect.objectContaining({ code: 401, type: "UNAUTHORIZED", message: expect.stringMatching(message) });

describe("verifyToken, with the tokens it verified lately remembered", () => {
	it("answers a token's user, the same the second time", () => {
		const token = sign({ sub: "ann", role: "customer", email: "ann@example.com", exp: Math.floor(Date.now() / 1000) + 600 });
		const user = { sub: "ann", role: "customer", name: undefined, email: "ann@example.com" };
		expect(verifyToken(token, SECRET)).toEqual(user);
		expect(verifyToken(token, SECRET)).toEqual(user);
	});

	it("refuses a remembered token once it has expired", () => {
		const now = Date.now();
		const token = sign({ sub: "bob", role: "customer", exp: Math.floor(now / 1000) + 10 });
		expect(verifyToken(token, SECRET, now).sub).toBe("bob");
		expect(() => verifyToken(token, SECRET, now + 11_000)).toThrow(unauthorized(/expired/));
	});

	it("never passes a remembered token under another secret, nor one changed in any byte", () => {
		const token = sign({ sub: "cy", role: "admin" });
		expect(verifyToken(token, SECRET).role).toBe("admin");
		expect(() => verifyToken(token, "another-secret-of-sufficient-length")).toThrow(unauthorized(/not valid/));
		const [header, payload, signature] = token.split(".");
		const forged = `${header}.${Buffer.from(JSON.stringify({ sub: "cy", role: "admin", x: 1 })).toString("base64url")}.${signature}`;
		expect(() => verifyToken(forged, SECRET)).toThrow(unauthorized(/not valid/));
		const flipped = `${header}.${payload}.${signature.slice(0, -2)}${signature.endsWith("AA") ? "BB" : "AA"}`;
		expect(() => verifyToken(flipped, SECRET)).toThrow(unauthorized(/not valid/));
	});
});
