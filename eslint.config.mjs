import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
	{ ignores: ["node_modules/", "dist/", "data/", "kafka/", ".tools/", "coverage/", "web/dist/", "web/src/api/schema.d.ts"] },
	js.configs.recommended,
	...tseslint.configs.recommended,
	{
		languageOptions: { globals: { require: "readonly", module: "writable", process: "readonly", console: "readonly" } },
		rules: {
			"@typescript-eslint/no-explicit-any": "off",
			"@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", ignoreRestSiblings: true }],
		},
	},
	// The browser app: its globals are the DOM's, which its own tsc run (tsconfig web/) checks.
	{ files: ["web/**/*.{ts,tsx}"], rules: { "no-undef": "off" } },
);
