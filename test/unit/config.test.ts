import { ALL_SERVICES, ConfigError, DEV_JWT_SECRET, DEV_WEBHOOK_SECRET, loadConfig, postgresServer } from "../../lib/config";
import { createBrokerOptions } from "../../moleculer.config";
import { Errors } from "moleculer";
import { LockTimeoutError } from "../../lib/locks";

function problem(env: Record<string, string>): string {
	try {
		loadConfig(env);
	} catch (err) {
		expect(err).toBeInstanceOf(ConfigError);
		return (err as Error).message;
	}
	throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
	it("gives the embedded defaults of SPEC section 8 when nothing is set", () => {
		const c = loadConfig({});
		expect(c.transporter).toBeUndefined();
		expect(c.databaseUrl).toBeUndefined();
		expect(c.redisUrl).toBeUndefined();
		expect(c.kafkaBrokers).toBeUndefined();
		expect(c.services).toEqual([...ALL_SERVICES]);
		expect(c.port).toBe(3000);
		expect(c.dataDir).toBe("./data");
		expect(c.storeCurrency).toBe("EUR");
		expect(c.reservationTtlMs).toBe(15 * 60 * 1000);
		expect(c.voucherThresholdCents).toBe(10000);
		expect(c.voucherAmountCents).toBe(500);
		expect(c.voucherTtlDays).toBe(365);
		expect(c.jwtSecret).toBe(DEV_JWT_SECRET);
	});

	it("reads the cluster settings", () => {
		const c = loadConfig({
			TRANSPORTER: "nats://127.0.0.1:4222",
			SERVICES: "order, inventory,order",
			DATABASE_URL: "postgres://postgres@127.0.0.1:5432/test",
			REDIS_URL: "redis://127.0.0.1:6379",
			KAFKA_BROKERS: "127.0.0.1:9092,localhost:9093",
			PORT: "8080",
			STORE_CURRENCY: "usd",
		});
		expect(c.services).toEqual(["order", "inventory"]);
		expect(c.kafkaBrokers).toEqual(["127.0.0.1:9092", "localhost:9093"]);
		expect(c.port).toBe(8080);
		expect(c.storeCurrency).toBe("USD");
	});

	it.each([
		[{ TRANSPORTER: "bogus://x" }, /^TRANSPORTER: must be a nats:\/\/ or tls:\/\/ URL/],
		[{ TRANSPORTER: "not a url" }, /^TRANSPORTER: is not a URL/],
		[{ DATABASE_URL: "mysql://x/y" }, /^DATABASE_URL: must be a postgres:/],
		[{ REDIS_URL: "http://x" }, /^REDIS_URL: /],
		[{ KAFKA_BROKERS: "localhost" }, /^KAFKA_BROKERS: expects host:port/],
		[{ PORT: "80a" }, /^PORT: must be a whole number/],
		[{ PORT: "70000" }, /^PORT: must be between 0 and 65535/],
		[{ SERVICES: "order,shipping" }, /^SERVICES: unknown service "shipping"/],
		[{ LOG_LEVEL: "loud" }, /^LOG_LEVEL: must be one of/],
		[{ TRACING_EXPORTER: "xray" }, /^TRACING_EXPORTER: must be one of/],
		[{ TRACING_EXPORTER: "zipkin" }, /^TRACING_ENDPOINT: is required with TRACING_EXPORTER=zipkin/],
		[{ STORE_CURRENCY: "EURO" }, /^STORE_CURRENCY: must be an ISO 4217 code/],
		[{ RESERVATION_TTL_MS: "-5" }, /^RESERVATION_TTL_MS: must be between/],
		[{ NODE_ENV: "production" }, /^JWT_SECRET: is required when NODE_ENV=production/],
		[{ JWT_SECRET: "short" }, /^JWT_SECRET: must be at least 16 characters/],
		[{ TRANSPORTER: "nats://127.0.0.1:4222" }, /^DATABASE_URL: is required when TRANSPORTER is set/],
		[{ HEARTBEAT_TIMEOUT_S: "1" }, /^HEARTBEAT_TIMEOUT_S: must be between 3 and/],
		[{ PAYMENT_WEBHOOK_SECRET: "whsec_short" }, /^PAYMENT_WEBHOOK_SECRET: must be at least 16 characters/],
		[{ PAYMENT_REDIRECT_ORIGINS: "https://shop.example.com/path" }, /^PAYMENT_REDIRECT_ORIGINS: expects origins like/],
		[{ PAYMENT_REDIRECT_ORIGINS: "*" }, /^PAYMENT_REDIRECT_ORIGINS: expects origins like/],
		[{ MOCK_GATEWAY_WEBHOOK_URL: "ftp://x" }, /^MOCK_GATEWAY_WEBHOOK_URL: must be a http/],
	])("refuses %j with one line naming the variable", (env, message) => {
		const text = problem(env as Record<string, string>);
		expect(text).toMatch(message);
		expect(text).not.toContain("\n");
	});

	it("drops a silent node after HEARTBEAT_TIMEOUT_S, with five heartbeats in that time", () => {
		expect(createBrokerOptions(loadConfig({}))).toMatchObject({ heartbeatTimeout: 10, heartbeatInterval: 2 });
		expect(createBrokerOptions(loadConfig({ HEARTBEAT_TIMEOUT_S: "30" }))).toMatchObject({ heartbeatTimeout: 30, heartbeatInterval: 6 });
		expect(createBrokerOptions(loadConfig({ HEARTBEAT_TIMEOUT_S: "3" }))).toMatchObject({ heartbeatTimeout: 3, heartbeatInterval: 1 });
	});

	it("opens a breaker for broken endpoints, not for lock contention on hot rows", () => {
		const { check } = createBrokerOptions(loadConfig({})).circuitBreaker as { check: (err: Error) => boolean };
		expect(check(new Errors.RequestTimeoutError({ action: "inventory.reserve", nodeID: "n1" }))).toBe(true);
		expect(check(new LockTimeoutError(["product:1"], 5000))).toBe(false);
		expect(check(new Errors.MoleculerClientError("bad", 422, "OUT_OF_STOCK"))).toBe(false);
	});

	it("lets a gateway-only cluster node run without a database", () => {
		expect(loadConfig({ TRANSPORTER: "nats://127.0.0.1:4222", SERVICES: "gateway" }).services).toEqual(["gateway"]);
	});

	it("accepts SERVICES=none for a node that only joins the cluster", () => {
		expect(loadConfig({ TRANSPORTER: "nats://127.0.0.1:4222", SERVICES: "none" }).services).toEqual([]);
	});

	it("treats empty variables as unset", () => {
		expect(loadConfig({ PORT: "", TRANSPORTER: " " }).port).toBe(3000);
	});

	it("accepts a production secret", () => {
		const c = loadConfig({ NODE_ENV: "production", JWT_SECRET: "a-long-enough-secret-value" });
		expect(c.production).toBe(true);
		expect(c.jwtSecret).toBe("a-long-enough-secret-value");
	});

	it("signs hosted payments' webhooks with a development secret and sends customers back to this gateway, outside production only", () => {
		expect(loadConfig({ PORT: "8080" })).toMatchObject({ paymentWebhookSecret: DEV_WEBHOOK_SECRET, paymentRedirectOrigins: ["http://localhost:8080", "http://127.0.0.1:8080"], paymentSessionTtlMs: 1800000 });
		const prod = loadConfig({ NODE_ENV: "production", JWT_SECRET: "a-long-enough-secret-value" });
		expect(prod.paymentWebhookSecret).toBeUndefined(); // hosted payments off until it is set
		expect(prod.paymentRedirectOrigins).toEqual([]);
		expect(loadConfig({ PAYMENT_WEBHOOK_SECRET: "whsec_a_real_secret_value", PAYMENT_REDIRECT_ORIGINS: "https://shop.example.com, https://m.shop.example.com" })).toMatchObject({
			paymentWebhookSecret: "whsec_a_real_secret_value",
			paymentRedirectOrigins: ["https://shop.example.com", "https://m.shop.example.com"],
		});
	});
});

describe("postgresServer", () => {
	it("reads a PostgreSQL URL as libpq does: its host and port, or the socket directory its host parameter names", () => {
		expect(postgresServer("postgres://postgres@127.0.0.1:5433/checkout")).toEqual({ host: "127.0.0.1", port: 5433 });
		expect(postgresServer("postgres://postgres@db/checkout")).toEqual({ host: "db", port: 5432 });
		expect(postgresServer("postgres://postgres@localhost/test?host=/var/run/postgresql")).toEqual({ host: "/var/run/postgresql", port: 5432, socketDir: "/var/run/postgresql" });
		expect(postgresServer("postgres://postgres@%2Ftmp%2Fpg:5432/postgres")).toEqual({ host: "/tmp/pg", port: 5432, socketDir: "/tmp/pg" });
	});
});
