/**
 * The README's curl session ("A full checkout with curl") run as it is written, in bash, against
 * `npm start`: only its port and data directory are moved, so that the walkthrough a newcomer
 * copies cannot drift from what the system does.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { freePort, tempDir } from "../../scripts/harness/node";

const ROOT = path.resolve(__dirname, "../..");

function curlSession(): string {
	const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
	const section = readme.slice(readme.indexOf("### A full checkout with curl"));
	const block = /```bash\n([\s\S]*?)```/.exec(section);
	if (!block) throw new Error("README: the curl session's bash block is missing");
	return block[1];
}

it("runs the README's curl checkout as written: ordered, confirmed, dispatched, a voucher, a refusal", async () => {
	const port = await freePort();
	const data = tempDir();
	const script = curlSession()
		.replaceAll("localhost:3000", `localhost:${port}`)
		.replace(/^npm start &/m, `PORT=${port} METRICS_PORT=0 DATA_DIR=${data.dir} LOG_LEVEL=warn npm start &`);
	try {
		const run = spawn("bash", ["-c", `set -m\n${script}\nwait`], { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: "" }, stdio: ["ignore", "pipe", "pipe"] });
		let out = "";
		run.stdout.on("data", d => (out += d));
		run.stderr.on("data", d => (out += d));
		const code = await new Promise<number | null>(resolve => run.on("exit", resolve));
		expect({ code, out: out.slice(-1500) }).toMatchObject({ code: 0 });
		expect(out).toMatch(/"sku":"BOOK-\d+"/);
		expect(out).toMatch(/"valid":true[^\n]*"total":11610/);
		expect(out).toMatch(/"status":"CONFIRMED","paymentStatus":"AUTHORIZED"/);
		expect(out).toMatch(/"status":"DISPATCHED"/);
		expect(out).toMatch(/"code":"VCH-[A-Z0-9-]+","amount":500/);
		expect(out).toMatch(/"title":"A voucher for you"/);
		expect(out).toContain('{"userId":"alice","balance":8390,"currency":"EUR"}');
		expect(out).toMatch(/"code":"CART_INVALID"[\s\S]*"code":"INSUFFICIENT_STOCK"/);
	} finally {
		data.remove();
	}
}, 120000);
