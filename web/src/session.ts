import { effect, signal } from "@preact/signals";

/** Who is signed in: a bearer token and what it says (kept in this browser only). */
export interface Session {
	token: string;
	sub: string;
	role: "customer" | "admin";
}

const KEY = "checkout.session";
function stored(): Session | null {
	try {
		return JSON.parse(localStorage.getItem(KEY) ?? "null");
	} catch {
		return null;
	}
}
export const session = signal<Session | null>(stored());
effect(() => {
	if (session.value) localStorage.setItem(KEY, JSON.stringify(session.value));
	else localStorage.removeItem(KEY);
});

/** A token's claims as a session (not verified here: the server verifies every request). */
export function sessionFromToken(token: string): Session | null {
	try {
		const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
		if (typeof claims.sub !== "string" || (claims.role !== "customer" && claims.role !== "admin")) return null;
		return { token, sub: claims.sub, role: claims.role };
	} catch {
		return null;
	}
}
