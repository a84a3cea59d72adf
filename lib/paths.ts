import { existsSync } from "node:fs";
import path from "node:path";

/** The folder of the project's package.json, from source (tsx) or compiled (dist/) code alike. */
export function projectRoot(from = __dirname): string {
	for (let dir = from; ; dir = path.dirname(dir)) {
		if (existsSync(path.join(dir, "package.json"))) return dir;
		if (path.dirname(dir) === dir) return process.cwd();
	}
}
