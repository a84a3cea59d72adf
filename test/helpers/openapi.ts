import Ajv, { type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import { http, type HttpResult } from "../../scripts/harness/http";

type Doc = { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>>; components: unknown };

/**
 * Checks answers against the OpenAPI document the gateway serves: the status must be one the
 * operation declares, and a JSON body must match that response's schema (ajv), so a drift between
 * the code and its document fails the test that saw it.
 */
export function responseChecker(doc: Doc): (method: string, url: string, res: HttpResult) => void {
	const ajv = new Ajv({ strict: false, allErrors: true });
	addFormats(ajv);
	ajv.addSchema({ $id: "openapi", components: doc.components });
	// Literal segments before parameters: /orders/{id} must not take /orders/{id}/stream.
	const routes = Object.entries(doc.paths)
		.map(([template, ops]) => ({ template, ops, pattern: new RegExp(`^${template.replace(/\{\w+\}/g, "[^/]+")}$`), params: (template.match(/\{/g) ?? []).length }))
		.sort((a, b) => a.params - b.params);
	const compiled = new Map<unknown, ValidateFunction>();
	const validatorFor = (schema: unknown) => {
		let validate = compiled.get(schema);
		if (!validate) {
			validate = ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"openapi#/components/')));
			compiled.set(schema, validate);
		}
		return validate;
	};
	return (method, url, res) => {
		const path = url.split("?")[0];
		const route = routes.find(r => r.pattern.test(path) && r.ops[method.toLowerCase()]);
		if (!route) return; // not an operation of the document (an unknown route answers ROUTE_NOT_FOUND)
		const operation = route.ops[method.toLowerCase()];
		const declared = operation.responses[String(res.status)];
		if (!declared) throw new Error(`${method} ${route.template} answered ${res.status}, which its document does not declare (${Object.keys(operation.responses).join(", ")})`);
		const schema = declared.content?.["application/json"]?.schema;
		if (!schema || !/json/.test(res.headers.get("content-type") ?? "")) return;
		const validate = validatorFor(schema);
		if (!validate(res.body)) {
			throw new Error(`${method} ${route.template} ${res.status} does not match its document: ${ajv.errorsText(validate.errors, { separator: "; " })}\n${JSON.stringify(res.body).slice(0, 400)}`);
		}
	};
}

export type AnswerCheck = ReturnType<typeof responseChecker>;
export type CheckedApi = (method: string, path: string, opts?: Parameters<typeof http>[3]) => Promise<HttpResult>;

/** `http` against a node's gateway, every answer checked against the document that gateway serves. */
export async function checkedApi(base: string): Promise<{ api: CheckedApi; check: AnswerCheck }> {
	const check = responseChecker((await http(base, "GET", "/api/openapi.json")).body);
	const api: CheckedApi = async (method, path, opts = {}) => {
		const res = await http(base, method, path, opts);
		check(method, path, res);
		return res;
	};
	return { api, check };
}
