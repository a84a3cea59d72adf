import { existsSync } from "node:fs";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import AxeBuilder from "@axe-core/playwright";

/** Debian's Chromium (`apt-get install -y chromium`), or CHROMIUM_PATH. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const WEB_DIST = path.resolve(__dirname, "../../web/dist/index.html");
export const SCREENSHOTS = path.resolve(__dirname, "../../docs/screenshots");

/** What is missing for the browser suite, one line each (empty: nothing). */
export function missingForBrowser(): string[] {
	const missing: string[] = [];
	if (!existsSync(CHROMIUM)) missing.push(`No Chromium at ${CHROMIUM}: \`apt-get install -y chromium\` (or set CHROMIUM_PATH).`);
	if (!existsSync(WEB_DIST)) missing.push("The web front is not built: `npm run build:web` (npm ci runs it).");
	return missing;
}

export function launch(): Promise<Browser> {
	return chromium.launch({
		executablePath: CHROMIUM,
		args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
	});
}

/** axe-core's serious and critical findings on the page as it is now (WCAG 2.x A and AA rules). */
export async function seriousViolations(page: Page): Promise<string[]> {
	const result = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
	return result.violations.filter(v => v.impact === "serious" || v.impact === "critical").map(v => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map(n => n.target.join(" ")).slice(0, 3).join("; ")}`);
}
