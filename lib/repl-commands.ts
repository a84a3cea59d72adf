import type { ServiceBroker } from "moleculer";
import { nodesReadiness, outboxBacklogs, replayDeadLetter, servicesWith } from "./ops";

/** A command of `npm run repl`, on top of Moleculer's own (nodes, services, call, metrics, …). */
export interface ReplCommand {
	command: string;
	description: string;
	action(broker: ServiceBroker, args: Record<string, any>): Promise<void>;
}

const print = (...lines: string[]) => console.log(lines.join("\n"));
const time = (iso?: string | null) => (iso ? iso.slice(11, 23) : "-");

async function report(what: string, fn: () => Promise<void>) {
	try {
		await fn();
	} catch (err) {
		const e = err as { type?: string; message: string };
		print(`${what}: ${e.type ? `${e.type}: ` : ""}${e.message}`);
	}
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const REPL_COMMANDS: ReplCommand[] = [
	{
		command: "order <id>",
		description: "An order with its history and its domain events (the id, or its last 8 characters as notifications show it)",
		async action(broker, args) {
			await report("order", async () => {
				let orderId = String(args.id);
				if (!UUID.test(orderId)) {
					const ids = await broker.call<string[], Record<string, unknown>>("order.idsEndingWith", { suffix: orderId });
					if (ids.length !== 1) return print(ids.length === 0 ? `no order ends with ${orderId}` : `${orderId} is ambiguous: ${ids.join(", ")}`);
					orderId = ids[0];
				}
				const o = await broker.call<any, Record<string, unknown>>("order.get", { orderId });
				const events = await broker.call<any[], Record<string, unknown>>("audit.timeline", { orderId }).catch(() => []);
				print(
					`order ${o.id} of ${o.userId}: ${o.status} / payment ${o.paymentStatus}, total ${o.total} ${o.currency}${o.failureCode ? `, failed: ${o.failureCode}` : ""}`,
					...o.items.map((l: any) => `  ${l.quantity} x ${l.sku} ${l.name} @ ${l.unitPrice} = ${l.lineTotal}`),
					"  history:",
					...o.statusHistory.map((h: any) => `    ${time(h.at)} ${h.status}${h.reason ? ` (${h.reason})` : ""}`),
					`  events (${events.length}):`,
					...events.map((e: any) => `    ${time(e.occurredAt)} ${e.eventName} from ${e.producer.service}@${e.producer.nodeID}`),
				);
			});
		},
	},
	{
		command: "stuck [seconds]",
		description: "Orders past their step's deadline (or idle for [seconds] before dispatch)",
		async action(broker, args) {
			await report("stuck", async () => {
				const rows = await broker.call<any[], Record<string, unknown>>("order.stuck", args.seconds ? { olderThanSeconds: Number(args.seconds) } : {});
				if (rows.length === 0) return print("no stuck orders");
				print(`${rows.length} stuck order(s):`, ...rows.map(o => `  ${o.id} ${o.status}/${o.paymentStatus} since ${o.updatedAt} deadline ${o.stepDeadline ?? "-"} re-driven ${o.redrives}x`));
			});
		},
	},
	{
		command: "stock <product>",
		description: "Stock of a product (id or SKU): levels, open reservations, latest movements",
		async action(broker, args) {
			await report("stock", async () => {
				const s = await broker.call<any, Record<string, unknown>>("inventory.stock", { product: String(args.product) });
				print(
					`${s.sku} ${s.name}${s.active ? "" : " (inactive)"}: onHand ${s.onHand}, reserved ${s.reserved}, available ${s.available}`,
					`  open reservations (${s.reservations.length}):`,
					...s.reservations.map((r: any) => `    order ${r.orderId} x${r.quantity} until ${r.expiresAt}`),
					"  latest movements:",
					...s.movements.map((m: any) => `    ${m.at} ${m.kind} ${m.quantity}${m.orderId ? ` order ${m.orderId}` : ""}`),
				);
			});
		},
	},
	{
		command: "deadletters [service]",
		description: "Events a service could not handle and that were not replayed yet",
		async action(broker, args) {
			const services = args.service ? [String(args.service)] : servicesWith(broker, "deadLetters");
			for (const service of services) {
				await report(service, async () => {
					const page = await broker.call<any, Record<string, unknown>>(`${service}.deadLetters`, { pending: true, pageSize: 100 });
					print(`${service}: ${page.total} dead letter(s)`, ...page.rows.map((d: any) => `  #${d.id} ${d.eventName} ${d.eventId ?? "(not an event)"} after ${d.attempts} tries: ${d.error}`));
				});
			}
		},
	},
	{
		command: "replay <service> <id>",
		description: "Hands a dead letter to its service's handler again",
		async action(broker, args) {
			await report("replay", async () => {
				const r = await replayDeadLetter(broker, String(args.service), Number(args.id));
				print(`replayed ${args.service} #${args.id}: ${r.outcome}`);
			});
		},
	},
	{
		command: "backlog",
		description: "Events waiting in each service's outbox",
		async action(broker) {
			await report("backlog", async () => {
				for (const { service, unpublished } of await outboxBacklogs(broker)) print(`${service}: ${unpublished} unpublished`);
			});
		},
	},
	{
		command: "health",
		description: "Readiness of every node: its services and the servers it uses",
		async action(broker) {
			for (const h of await nodesReadiness(broker)) {
				if (h.error) print(`${h.nodeID}: ${h.error}`);
				else {
					const checks = Object.entries(h.checks).map(([k, v]) => `${k}=${v}`).join(" ");
					print(`${h.nodeID}: ${h.status} [${h.services.join(",") || "no services"}] ${checks || "no dependencies"} up ${h.uptimeSeconds}s rss ${h.memoryMb}MB`);
				}
			}
		},
	},
];
