/**
 * `npm run test:cluster` needs real servers. Each is checked first; a missing one fails the run
 * with its name and how to start it, never a silent skip.
 */
import { missingServers } from "../../scripts/harness/cluster";

export default async function globalSetup(): Promise<void> {
	const missing = await missingServers();
	if (missing.length > 0) {
		throw new Error(`test:cluster needs real servers.\n${missing.join("\n")}\nKafka: \`npm run kafka -- start\`; the others: see README "Running the tests".`);
	}
}
