import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Service, ServiceSchema } from "moleculer";
import ApiGateway, { type ApiSettingsSchema } from "moleculer-web";
import { runtimeOf } from "../lib/runtime";
import { checkReadiness } from "../lib/health";

type GatewayThis = Service & { server: import("node:http").Server };

function sendJson(res: ServerResponse, status: number, body: unknown): void {
	res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store" });
	res.end(JSON.stringify(body));
}

/**
 * The HTTP edge (moleculer-web). Health answers for the node that serves the request, so the
 * probes are alias functions rather than balanced actions.
 */
const GatewayService: ServiceSchema<ApiSettingsSchema> = {
	name: "gateway",
	mixins: [ApiGateway],
	settings: {
		port: 3000,
		ip: "0.0.0.0",
		routes: [
			{
				path: "/health",
				mappingPolicy: "restrict",
				bodyParsers: false,
				aliases: {
					"GET live"(_req: IncomingMessage, res: ServerResponse) {
						sendJson(res, 200, { status: "ok" });
					},
					async "GET ready"(this: GatewayThis, _req: IncomingMessage, res: ServerResponse) {
						const readiness = await checkReadiness(this.broker);
						sendJson(res, readiness.status === "ok" ? 200 : 503, readiness);
					},
				},
			},
		],
	},
	created() {
		this.settings.port = runtimeOf(this.broker).config.port;
	},
	methods: {
		/** The port actually bound (PORT=0 picks a free one, as the tests do). */
		listeningPort(this: GatewayThis): number {
			return (this.server.address() as AddressInfo).port;
		},
	},
};

export default GatewayService;
