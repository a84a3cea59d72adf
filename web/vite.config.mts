import { defineConfig } from "vite";

// The storefront and console, built into web/dist and served by the gateway under a strict CSP:
// no inline script (so no module-preload polyfill), every asset hashed for long caching.
export default defineConfig({
	root: import.meta.dirname,
	base: "/",
	build: { outDir: "dist", emptyOutDir: true, modulePreload: { polyfill: false }, chunkSizeWarningLimit: 400 },
	// `npm run dev:web`: this app with hot reload, the API from a node on :3000.
	server: { proxy: { "/api": "http://127.0.0.1:3000" } },
});
