/** `npm run test:e2e`: the web front in a real browser (Debian's Chromium); fails naming what is missing. */
module.exports = {
	testEnvironment: "node",
	transform: { "^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.json" }] },
	roots: ["<rootDir>/test/e2e"],
	globalSetup: "<rootDir>/test/e2e/global-setup.ts",
	testTimeout: 120000,
	maxWorkers: 1,
};
