/**
 * Where a hosted payment may send the customer back to: an http(s) URL on one of the shop's own
 * origins (PAYMENT_REDIRECT_ORIGINS), never anywhere a crafted request names (no open redirect).
 * Returns what is wrong with `url`, or undefined when it may be used.
 */
export function redirectProblem(url: string, allowedOrigins: readonly string[]): string | undefined {
	let parsed: URL;
	try {
		// `{SESSION_ID}` (the gateway fills it in) is not valid in a URL's syntax as such.
		parsed = new URL(url.replaceAll("{SESSION_ID}", "SESSION_ID"));
	} catch {
		return "is not a URL";
	}
	if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return "must be an http(s) URL";
	if (parsed.username || parsed.password) return "must not hold credentials";
	if (!allowedOrigins.includes(parsed.origin)) return `must be on an allowed origin (PAYMENT_REDIRECT_ORIGINS), not ${parsed.origin}`;
	return undefined;
}
