/** `npm run token -- --sub alice --role customer [--name Alice] [--email a@x.io] [--ttl 3600]` */
import { parseArgs } from "node:util";
import { loadConfig } from "../lib/config";
import { signToken, type Role } from "../lib/auth";

try {
	const { values } = parseArgs({
		options: {
			sub: { type: "string" },
			role: { type: "string", default: "customer" },
			name: { type: "string" },
			email: { type: "string" },
			ttl: { type: "string", default: "86400" },
		},
	});
	if (!values.sub) throw new Error("--sub <user id> is required");
	if (values.role !== "customer" && values.role !== "admin") throw new Error("--role must be customer or admin");
	const ttl = Number(values.ttl);
	if (!Number.isInteger(ttl) || ttl <= 0) throw new Error("--ttl must be a positive number of seconds");
	const config = loadConfig();
	console.log(signToken({ sub: values.sub, role: values.role as Role, name: values.name, email: values.email }, config.jwtSecret, ttl));
} catch (err) {
	console.error(`token: ${(err as Error).message}`);
	console.error("usage: npm run token -- --sub <user id> [--role customer|admin] [--name N] [--email E] [--ttl seconds]");
	process.exit(2);
}
