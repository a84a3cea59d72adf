import { execFileSync, spawnSync } from "node:child_process";
import path from "node:path";
import jwt from "jsonwebtoken";
import { DEV_JWT_SECRET } from "../../lib/config";

const ROOT = path.resolve(__dirname, "../..");
const run = (args: string[], env: Record<string, string> = {}) =>
	spawnSync(process.execPath, ["--import", "tsx", "bin/token.ts", ...args], { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: "", JWT_SECRET: "", ...env }, encoding: "utf8" });

describe("npm run token", () => {
	it("mints an HS256 token with the development secret outside production", () => {
		const out = execFileSync(process.execPath, ["--import", "tsx", "bin/token.ts", "--sub", "alice", "--role", "admin", "--email", "a@example.com"], {
			cwd: ROOT,
			env: { ...process.env, NODE_OPTIONS: "", JWT_SECRET: "" },
			encoding: "utf8",
		});
		const claims = jwt.verify(out.trim(), DEV_JWT_SECRET, { algorithms: ["HS256"] }) as jwt.JwtPayload;
		expect(claims).toMatchObject({ sub: "alice", role: "admin", email: "a@example.com" });
		expect(claims.exp! - claims.iat!).toBe(86400);
	});

	it("signs with JWT_SECRET when it is set", () => {
		const secret = "a-secret-of-sufficient-length";
		const res = run(["--sub", "bob", "--ttl", "60"], { JWT_SECRET: secret });
		expect(res.status).toBe(0);
		expect(jwt.verify(res.stdout.trim(), secret)).toMatchObject({ sub: "bob", role: "customer" });
	});

	it.each([
		[["--role", "customer"], /token: --sub <user id> is required/],
		[["--sub", "x", "--role", "boss"], /token: --role must be customer or admin/],
		[["--sub", "x", "--ttl", "0"], /token: --ttl must be a positive number of seconds/],
	])("refuses %j", (args, message) => {
		const res = run(args);
		expect(res.status).toBe(2);
		expect(res.stderr).toMatch(message);
	});
});
