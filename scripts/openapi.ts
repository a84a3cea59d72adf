/**
 * `npm run openapi -- <file>`: writes the OpenAPI document the gateway serves (built from the live
 * actions of an embedded node in memory) to <file>, or prints it; for client generators.
 * `npm run lint:openapi`: the same document through two strict tools, failing on any error:
 * @apidevtools/swagger-parser's validation and `redocly lint` with its recommended rules.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import SwaggerParser from "@apidevtools/swagger-parser";
import { loadConfig } from "../lib/config";
import { createNode } from "../lib/node";
import { buildOpenApi } from "../lib/api/openapi";

async function servedDocument(): Promise<Record<string, unknown>> {
	const broker = createNode(loadConfig({ DATA_DIR: "memory://openapi", PORT: "0", METRICS_PORT: "0", LOG_LEVEL: "error" }));
	await broker.start();
	try {
		return buildOpenApi(broker);
	} finally {
		await broker.stop();
	}
}

async function lint(doc: Record<string, unknown>): Promise<boolean> {
	const dir = mkdtempSync(path.join(tmpdir(), "openapi-"));
	const file = path.join(dir, "openapi.json");
	writeFileSync(file, JSON.stringify(doc, null, 2));
	try {
		await SwaggerParser.validate(file);
		console.log("openapi: @apidevtools/swagger-parser: valid");
		const redocly = spawnSync(process.execPath, [require.resolve("@redocly/cli/bin/cli.js"), "lint", "--extends", "recommended", "--format", "stylish", file], { stdio: "inherit" });
		return redocly.status === 0;
	} catch (err) {
		console.error(`openapi: @apidevtools/swagger-parser: ${(err as Error).message}`);
		return false;
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
}

async function main(): Promise<number> {
	const doc = await servedDocument();
	if (process.argv[2] === "--check") return (await lint(doc)) ? 0 : 1;
	const json = JSON.stringify(doc, null, 2) + "\n";
	if (process.argv[2]) writeFileSync(process.argv[2], json);
	else process.stdout.write(json);
	return 0;
}

main().then(
	code => process.exit(code),
	err => {
		console.error(`openapi: ${(err as Error).message}`);
		process.exit(1);
	},
);
