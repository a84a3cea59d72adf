/** `npm run test:cluster`: real PostgreSQL, Redis, NATS and Kafka; fails naming a missing server. */
module.exports = {
	testEnvironment: "node",
	transform: { "^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.json" }] },
	roots: ["<rootDir>/test/cluster"],
	globalSetup: "<rootDir>/test/cluster/global-setup.ts",
	testTimeout: 180000,
	maxWorkers: 1,
};
