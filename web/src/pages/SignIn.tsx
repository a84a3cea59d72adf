import { useState } from "preact/hooks";
import { api, must, type ApiProblem } from "../api/client";
import { session, sessionFromToken } from "../session";
import { route } from "../router";
import { ErrorNote, Field, described } from "../components/ui";

/**
 * Sign-in. Outside production the development sign-in mints a token for any name and role (the
 * server answers it only while its development secret is in use); anywhere, a token from the
 * shop's own identity provider can be pasted.
 */
export function SignIn() {
	const [name, setName] = useState("");
	const [role, setRole] = useState<"customer" | "admin">("customer");
	const [token, setToken] = useState("");
	const [problem, setProblem] = useState<ApiProblem | null>(null);
	const [devOff, setDevOff] = useState(false);
	const back = route.value.path === "/signin" ? "#/" : location.hash;

	const signInDev = async (e: Event) => {
		e.preventDefault();
		setProblem(null);
		try {
			const minted = await must(api.POST("/api/dev/token", { body: { sub: name.trim(), role } }));
			session.value = { token: minted.token, sub: minted.sub, role: minted.role };
			location.hash = back;
		} catch (err) {
			const p = err as ApiProblem;
			if (p.status === 404) setDevOff(true);
			else setProblem(p);
		}
	};
	const signInToken = (e: Event) => {
		e.preventDefault();
		const s = sessionFromToken(token.trim());
		if (!s) return setProblem({ status: 0, code: "TOKEN", message: "That is not a token this shop can read.", fields: {}, lines: [] });
		session.value = s;
		location.hash = back;
	};
	return (
		<section class="narrow">
			<h1>Sign in</h1>
			<ErrorNote problem={problem} />
			{!devOff && (
				<form onSubmit={signInDev} class="card">
					<h2>Development sign-in</h2>
					<p class="muted">For trying the shop: any name, as a customer or an admin. Not available in production.</p>
					<Field id="dev-name" label="User name" error={problem?.fields.sub}>
						<input {...described("dev-name", problem?.fields.sub)} required maxLength={100} pattern="[A-Za-z0-9._@\-]+" value={name} onInput={e => setName(e.currentTarget.value)} autoComplete="username" />
					</Field>
					<fieldset>
						<legend>Role</legend>
						<label>
							<input type="radio" name="role" value="customer" checked={role === "customer"} onChange={() => setRole("customer")} /> Customer
						</label>
						<label>
							<input type="radio" name="role" value="admin" checked={role === "admin"} onChange={() => setRole("admin")} /> Admin
						</label>
					</fieldset>
					<button type="submit">Sign in</button>
				</form>
			)}
			<form onSubmit={signInToken} class="card">
				<h2>{devOff ? "Sign in with your token" : "Or use a token"}</h2>
				<p class="muted">A JWT from the shop's identity provider (HS256, claims sub and role).</p>
				<Field id="token" label="Token">
					<textarea id="token" rows={3} required value={token} onInput={e => setToken(e.currentTarget.value)} />
				</Field>
				<button type="submit">Use this token</button>
			</form>
		</section>
	);
}
