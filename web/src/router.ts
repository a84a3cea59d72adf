import { signal } from "@preact/signals";

/**
 * Hash routes (`#/orders/<id>`): every address works on reload and as a payment provider's return
 * URL while the gateway serves one file for the app.
 */
export interface Route {
	path: string;
	query: URLSearchParams;
}
const current = (): Route => {
	const [path, query] = (location.hash.slice(1) || "/").split("?");
	return { path: path || "/", query: new URLSearchParams(query ?? "") };
};
export const route = signal<Route>(current());
addEventListener("hashchange", () => {
	route.value = current();
	window.scrollTo(0, 0);
});

export const navigate = (to: string) => {
	location.hash = to;
};
/** `pattern` like `/orders/:id` against `path`: its parameters, or undefined. */
export function match(pattern: string, path: string): Record<string, string> | undefined {
	const p = pattern.split("/");
	const s = path.split("/");
	if (p.length !== s.length) return undefined;
	const params: Record<string, string> = {};
	for (let i = 0; i < p.length; i++) {
		if (p[i].startsWith(":")) params[p[i].slice(1)] = decodeURIComponent(s[i]);
		else if (p[i] !== s[i]) return undefined;
	}
	return params;
}
