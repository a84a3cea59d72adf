/**
 * `npm run mock-gateway`: the mock card gateway on its own (MOCK_GATEWAY_PORT, default 4010), for a
 * cluster whose payment nodes share one: set PAYMENT_GATEWAY_URL=http://<host>:4010 on them.
 */
import { startMockGateway } from "../lib/mock-gateway";

const port = Number(process.env.MOCK_GATEWAY_PORT ?? 4010);
startMockGateway(port, process.env.MOCK_GATEWAY_HOST ?? "127.0.0.1").then(
	gateway => {
		console.log(`Mock card gateway listening on ${gateway.url}`);
		const stop = () => gateway.close().then(() => process.exit(0));
		process.on("SIGTERM", stop);
		process.on("SIGINT", stop);
	},
	err => {
		console.error(`mock-gateway: cannot listen on port ${port} (${(err as Error).message})`);
		process.exit(1);
	},
);
