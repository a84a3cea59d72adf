/**
 * No Docker engine or Kubernetes runs where this is built, so CI checks the deployment files
 * instead: they parse, every service is deployed by some node group, every variable they set is
 * one the configuration reads, probes point at routes the nodes serve, and the image builds from
 * files that exist.
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { parse, parseAllDocuments } from "yaml";
import { ALL_SERVICES } from "../../lib/config";
import { NODE_FLAGS } from "../../lib/node-flags";

const ROOT = path.resolve(__dirname, "../..");
const read = (file: string) => readFileSync(path.join(ROOT, file), "utf8");

/** Every variable lib/config.ts reads (and NODE_ENV), from its source. */
const KNOWN_VARIABLES = new Set([...read("lib/config.ts").matchAll(/\(env, "([A-Z0-9_]+)"/g)].map(m => m[1]));
const PROBE_PATHS = new Set(["/health/live", "/health/ready"]);

function k8sDocuments(dir: string): any[] {
	return readdirSync(path.join(ROOT, dir))
		.filter(f => f.endsWith(".yaml") && f !== "kustomization.yaml")
		.flatMap(f => parseAllDocuments(read(`${dir}/${f}`)).map(d => {
			expect(d.errors).toEqual([]);
			return d.toJS();
		}));
}

describe("deployment descriptions", () => {
	it("knows the configuration's variables", () => {
		expect(KNOWN_VARIABLES.has("TRANSPORTER")).toBe(true);
		expect(KNOWN_VARIABLES.has("HEALTH_PORT")).toBe(true);
		expect(KNOWN_VARIABLES.size).toBeGreaterThan(30);
	});

	describe("docker-compose.yml", () => {
		const compose = parse(read("docker-compose.yml"), { merge: true }); // the node groups share an anchor
		const app = Object.entries(compose.services as Record<string, any>).filter(([, s]) => s.environment?.SERVICES);

		it("deploys every service in some node group", () => {
			const deployed = new Set(app.flatMap(([, s]) => String(s.environment.SERVICES).split(",")));
			expect([...ALL_SERVICES].filter(s => !deployed.has(s))).toEqual([]);
		});

		it("sets only variables the configuration reads", () => {
			const set = new Set(app.flatMap(([, s]) => Object.keys(s.environment)));
			expect([...set].filter(v => !KNOWN_VARIABLES.has(v))).toEqual([]);
		});

		it("health-checks every node group at a route it serves, and can scale the workers", () => {
			for (const [name, s] of app) {
				const check = (s.healthcheck?.test ?? []).join(" ");
				const port = s.environment.HEALTH_PORT ?? s.environment.PORT ?? "3000";
				expect([name, check]).toEqual([name, expect.stringMatching(new RegExp(`127\\.0\\.0\\.1:${port}/health/ready`))]);
				if (name !== "gateway") expect(s.ports).toBeUndefined(); // no fixed host port: `--scale` works
			}
		});

		it("runs the infrastructure the nodes point at", () => {
			for (const host of ["nats", "postgres", "redis", "kafka", "zipkin"]) expect(compose.services[host]).toBeDefined();
		});
	});

	describe("k8s", () => {
		const base = k8sDocuments("k8s/base");
		const dev = k8sDocuments("k8s/dev");
		const of = (kind: string) => base.filter(d => d.kind === kind);
		const configMap = of("ConfigMap")[0].data as Record<string, string>;
		const secret = of("Secret")[0].stringData as Record<string, string>;

		it("lists files that exist in its kustomizations", () => {
			for (const dir of ["k8s/base", "k8s/dev"]) {
				const k = parse(read(`${dir}/kustomization.yaml`));
				for (const r of k.resources as string[]) expect([dir, r, existsSync(path.join(ROOT, dir, r))]).toEqual([dir, r, true]);
			}
		});

		it("deploys every service in some node group, each with probes, resources and a graceful stop", () => {
			const deployments = of("Deployment");
			const deployed = new Set(deployments.flatMap(d => d.spec.template.spec.containers[0].env.find((e: any) => e.name === "SERVICES").value.split(",")));
			expect([...ALL_SERVICES].filter(s => !deployed.has(s))).toEqual([]);
			const drainSeconds = Number(configMap.SHUTDOWN_DRAIN_MS) / 1000;
			for (const d of deployments) {
				const pod = d.spec.template.spec;
				const c = pod.containers[0];
				const env = Object.fromEntries(c.env.map((e: any) => [e.name, e.value]));
				const portOf = (name: string) => c.ports.find((p: any) => p.name === name)?.containerPort;
				for (const probe of [c.readinessProbe, c.livenessProbe]) {
					expect(PROBE_PATHS.has(probe.httpGet.path)).toBe(true);
					const port = portOf(probe.httpGet.port);
					// The gateway answers on PORT (3000 by default); the others on HEALTH_PORT.
					expect([d.metadata.name, port]).toEqual([d.metadata.name, env.SERVICES.split(",").includes("gateway") ? 3000 : Number(env.HEALTH_PORT)]);
				}
				expect(c.resources.requests).toBeDefined();
				expect(c.resources.limits).toBeDefined();
				// Drain, then up to 10 s of in-flight requests, then the pools close.
				expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(drainSeconds + 10);
				for (const v of Object.keys(env)) expect([d.metadata.name, v, KNOWN_VARIABLES.has(v)]).toEqual([d.metadata.name, v, true]);
			}
		});

		it("scales and protects only what it deploys", () => {
			const names = new Set(of("Deployment").map(d => d.metadata.name));
			for (const h of of("HorizontalPodAutoscaler")) expect(names.has(h.spec.scaleTargetRef.name)).toBe(true);
			for (const p of of("PodDisruptionBudget")) expect(names.has(p.spec.selector.matchLabels.group)).toBe(true);
			expect(of("HorizontalPodAutoscaler").map(h => h.metadata.name).sort()).toEqual(["gateway", "inventory", "order", "payment"]);
		});

		it("configures only variables the configuration reads", () => {
			for (const v of [...Object.keys(configMap), ...Object.keys(secret)]) expect([v, KNOWN_VARIABLES.has(v)]).toEqual([v, true]);
		});

		it("routes the Ingress to the gateway's Service and port", () => {
			const [service] = of("Service");
			const [ingress] = of("Ingress");
			const backend = ingress.spec.rules[0].http.paths[0].backend.service;
			expect(backend.name).toBe(service.metadata.name);
			expect(service.spec.ports.map((p: any) => p.name)).toContain(backend.port.name);
		});

		it("brings the dev cluster's infrastructure under the names its patches use", () => {
			const services = dev.filter(d => d.kind === "Service").map(d => d.metadata.name).sort();
			expect(services).toEqual(["kafka", "nats", "postgres", "redis", "zipkin"]);
			const patches = read("k8s/dev/kustomization.yaml");
			for (const host of ["nats:4222", "redis:6379", "kafka:9092", "zipkin:9411", "postgres:5432"]) expect(patches).toContain(host);
		});
	});

	describe("Dockerfile", () => {
		const dockerfile = read("Dockerfile");

		it("copies only files that exist and starts the compiled entry point", () => {
			const copies = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap(m => m[1].split(/\s+/));
			for (const f of copies) expect([f, existsSync(path.join(ROOT, f))]).toEqual([f, true]);
			expect(dockerfile).toContain(`CMD ${JSON.stringify(["node", ...NODE_FLAGS, "dist/bin/node.js"]).replace(/,/g, ", ")}`);
			expect(existsSync(path.join(ROOT, "bin/node.ts"))).toBe(true);
			const build = JSON.parse(read("tsconfig.build.json"));
			expect(build.include).toEqual(expect.arrayContaining(["bin", "lib", "mixins", "services", "moleculer.config.ts"]));
		});

		it("stops on SIGTERM through node itself (exec form), with a non-root user", () => {
			expect(dockerfile).toMatch(/^USER node$/m);
			expect(dockerfile).not.toMatch(/^CMD (?!\[)/m);
		});

		it("builds and runs on the Node that .nvmrc names, one package.json's engines allow", () => {
			const major = Number(read(".nvmrc").trim());
			const bases = [...dockerfile.matchAll(/^FROM node:(\d+)-/gm)].map(m => Number(m[1]));
			expect(bases.length).toBeGreaterThanOrEqual(2);
			expect(bases.every(b => b === major)).toBe(true);
			const [, oldest, below] = /^>=(\d+) <(\d+)$/.exec(JSON.parse(read("package.json")).engines.node)!.map(Number);
			expect(oldest).toBeLessThanOrEqual(major);
			expect(major).toBeLessThan(below);
			// CI installs the .nvmrc version and also runs npm test on the oldest the engines allow.
			expect(read(".ci/run")).toContain("< .nvmrc");
			expect(read(".ci/run")).toContain("engines.node");
		});
	});

	it("starts every node with the node's V8 flags: npm start, the image, the scripts that spawn nodes", () => {
		const scripts = JSON.parse(read("package.json")).scripts;
		for (const name of ["start", "start:node"]) expect(scripts[name]).toBe(`exec node ${NODE_FLAGS.join(" ")} --import tsx bin/node.ts`);
		expect(read("scripts/harness/cluster.ts")).toContain('spawn(process.execPath, [...NODE_FLAGS, "--import", "tsx", entry]');
	});
});
