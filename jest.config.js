/** `npm test`: unit tests and the embedded node; needs no server at all. */
module.exports = {
	testEnvironment: "node",
	transform: { "^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.json" }] },
	roots: ["<rootDir>/test/unit", "<rootDir>/test/embedded"],
	testTimeout: 60000,
};
