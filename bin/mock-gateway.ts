/**
 * `npm run mock-gateway`: the mock card gateway on its own (MOCK_GATEWAY_PORT, default 4010), for a
 * cluster whose payment nodes share one: set PAYMENT_GATEWAY_URL=http://<host>:4010 on them. Its
 * hosted sessions' webhooks go to MOCK_GATEWAY_WEBHOOK_URL (default: the local gateway's
 * /api/webhooks/payment-gateway), signed with PAYMENT_WEBHOOK_SECRET (default: the development secret);
 * its hosted pages are linked as MOCK_GATEWAY_PUBLIC_URL when browsers reach it by another address.
 */
import { startMockGateway } from "../lib/mock-gateway";
import { DEV_WEBHOOK_SECRET } from "../lib/config";

const port = Number(process.env.MOCK_GATEWAY_PORT ?? 4010);
startMockGateway({
	port,
	host: process.env.MOCK_GATEWAY_HOST ?? "127.0.0.1",
	publicUrl: process.env.MOCK_GATEWAY_PUBLIC_URL,
	webhookUrl: process.env.MOCK_GATEWAY_WEBHOOK_URL ?? `http://127.0.0.1:${process.env.PORT ?? 3000}/api/webhooks/payment-gateway`,
	webhookSecret: process.env.PAYMENT_WEBHOOK_SECRET ?? DEV_WEBHOOK_SECRET,
}).then(
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
