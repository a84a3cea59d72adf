import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";
import { session } from "../session";

/** The API's schemas by name (generated from the served OpenAPI document: drift breaks the build). */
export type Schemas = components["schemas"];
export type Product = Schemas["Product"];
export type Order = Schemas["Order"];
export type CartValidation = Schemas["CartValidation"];
export type PaymentSession = Schemas["PaymentSession"];

/** The error shape every API answer uses (SPEC section 2), as read by the pages. */
export interface ApiProblem {
	status: number;
	code: string;
	message: string;
	/** Field errors of a 400, by field path (`shippingAddress.postalCode`). */
	fields: Record<string, string>;
	/** A cart's line errors (422 CART_INVALID). */
	lines: Array<{ code: string; message: string; productId?: string; field?: string }>;
}

const auth: Middleware = {
	onRequest({ request }) {
		const token = session.value?.token;
		if (token) request.headers.set("Authorization", `Bearer ${token}`);
		return request;
	},
	onResponse({ response }) {
		// An expired or revoked token: back to the sign-in page.
		if (response.status === 401 && session.value) session.value = null;
		return response;
	},
};

export const api = createClient<paths>({ baseUrl: "" });
api.use(auth);

/** What people read for the codes they meet; anything else shows the server's own message. */
const READABLE: Record<string, string> = {
	UNAUTHORIZED: "Please sign in again.",
	FORBIDDEN: "This needs the admin role.",
	RATE_LIMITED: "Too many requests: wait a moment and try again.",
	SERVICE_UNAVAILABLE: "A part of the shop is restarting: try again in a few seconds.",
	PROVIDER_UNAVAILABLE: "The payment provider cannot be reached right now: try again shortly.",
	CART_INVALID: "Some lines of the cart need a change.",
	PAYMENT_DECLINED: "The card was declined.",
	INSUFFICIENT_FUNDS: "There is not enough money for this payment.",
	ORDER_NOT_PAYABLE: "This order cannot be paid now.",
	VALIDATION_ERROR: "Some fields need a change.",
};

/** Any failed answer (or a network failure) as something a page can show. */
export function problemOf(error: unknown, response?: Response): ApiProblem {
	const e = (error as { error?: { code?: string; message?: string; details?: any } } | undefined)?.error;
	const fields: Record<string, string> = {};
	for (const f of e?.details?.fields ?? []) if (f.field) fields[f.field] = f.message ?? "Not valid";
	const code = e?.code ?? (response ? `HTTP_${response.status}` : "NETWORK");
	return {
		status: response?.status ?? 0,
		code,
		message: READABLE[code] ?? e?.message ?? (response ? `The server answered ${response.status}` : "The shop cannot be reached. Check the connection and try again."),
		fields,
		lines: e?.details?.errors ?? [],
	};
}

/** Unwraps an openapi-fetch answer: the data, or throws its ApiProblem. */
export async function must<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
	let answer: { data?: T; error?: unknown; response: Response };
	try {
		answer = await call;
	} catch {
		throw problemOf(undefined);
	}
	if (answer.error !== undefined || !answer.response.ok) throw problemOf(answer.error, answer.response);
	return answer.data as T;
}

export const isProblem = (e: unknown): e is ApiProblem => typeof e === "object" && e !== null && "code" in e && "fields" in e;
