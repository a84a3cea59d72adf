/** The browser suite needs a browser and the built web front: a missing one fails the run naming it, never a silent skip. */
import { missingForBrowser } from "./browser";

export default async function globalSetup(): Promise<void> {
	const missing = missingForBrowser();
	if (missing.length > 0) throw new Error(`test:e2e cannot run.\n${missing.join("\n")}`);
}
