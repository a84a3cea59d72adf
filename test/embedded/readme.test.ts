/**
 * The README's curl sessions ("A full checkout with curl", "A hosted card payment with curl") run
 * as they are written, in bash, against `npm start`: only their port and data directory are moved,
 * so that the walkthroughs a newcomer copies cannot drift from what the system does.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { freePort, tempDir } from "../../scripts/harness/node";

const ROOT = path.resolve(__dirname, "../..");

function curlSession(heading: string): string {
	const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
	const at = readme.indexOf(heading);
	const block = /```bash\n([\s\S]*?)```/.exec(readme.slice(at));
	if (at < 0 || !block) throw new Error(`README: the bash block of "${heading}" is missing`);
	return block[1];
}

/** Runs a session on a free port and a fresh data directory; its exit code and output. */
async function runSession(heading: string): Promise<string> {
	const port = await freePort();
	const data = tempDir();
	const script = curlSession(heading)
		.replaceAll("localhost:3000", `localhost:${port}`)
		.replace(/^npm start &/m, `PORT=${port} METRICS_PORT=0 DATA_DIR=${data.dir} LOG_LEVEL=warn npm start &`);
	try {
		const run = spawn("bash", ["-c", `set -m\n${script}\nwait`], { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: "" }, stdio: ["ignore", "pipe", "pipe"] });
		let out = "";
		run.stdout.on("data", d => (out += d));
		run.stderr.on("data", d => (out += d));
		const code = await new Promise<number | null>(resolve => run.on("exit", resolve));
		expect({ code, out: out.slice(-1500) }).toMatchObject({ code: 0 });
		return out;
	} finally {
		data.remove();
	}
}

it("runs the README's curl checkout as written: ordered, confirmed, dispatched, a voucher, a refusal", async () => {
	const out = await runSession("### A full checkout with curl");
	expect(out).toMatch(/"sku":"BOOK-\d+"/);
	expect(out).toMatch(/"valid":true[^\n]*"total":11610/);
	expect(out).toMatch(/"status":"CONFIRMED","paymentStatus":"AUTHORIZED"/);
	expect(out).toMatch(/"status":"DISPATCHED"/);
	expect(out).toMatch(/"code":"VCH-[A-Z0-9-]+","amount":500/);
	expect(out).toMatch(/"title":"A voucher for you"/);
	expect(out).toContain('{"userId":"alice","balance":8390,"currency":"EUR"}');
	expect(out).toMatch(/"code":"CART_INVALID"[\s\S]*"code":"INSUFFICIENT_STOCK"/);
}, 120000);

it("runs the README's hosted card payment as written: session, the page's cards, a decline, the redirect, verified, confirmed, a forged webhook refused", async () => {
	const out = await runSession("### A hosted card payment with curl");
	expect(out).toMatch(/"id":"cs_[0-9a-f]+"[^\n]*"url":"http:\/\/127\.0\.0\.1:\d+\/checkout\/cs_[0-9a-f]+","status":"open","paymentStatus":"unpaid"/);
	expect(out).toContain('value="tok_visa"');
	expect(out).toMatch(/^402$/m);
	expect(out).toMatch(/^303 http:\/\/localhost:\d+\/paid\?session=cs_[0-9a-f]+$/m);
	expect(out).toMatch(/"status":"complete","paymentStatus":"paid"/);
	expect(out).toMatch(/method: 'HOSTED_CARD'/);
	expect(out).toContain('"code":"WEBHOOK_SIGNATURE_INVALID"');
}, 120000);
