import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { DataTypes } from "sequelize";
import { DbMixin } from "../mixins/db.mixin";
import { EventsMixin, type EventsService, type SetStatementHandler } from "../mixins/events.mixin";
import { DOMAIN_EVENTS } from "../lib/events/catalogue";

/**
 * Stores one row per domain event, with who produced it and the trace it belongs to: a batch of
 * events is one multi-row insert, read from each event's envelope. The log is its own inbox (one
 * row per event_id), so a batch is that one statement.
 */
const record: SetStatementHandler = {
	setStatement() {
		return `INSERT INTO ${this.table("audit_log")} (event_id, event_name, correlation_id, causation_id, producer_service, producer_node, occurred_at, data, trace_id)
			SELECT event_id, envelope->>'eventName', envelope->>'correlationId', (envelope->>'causationId')::uuid, envelope->'producer'->>'service',
			       envelope->'producer'->>'nodeID', (envelope->>'occurredAt')::timestamptz, envelope->'data', envelope->'trace'->>'requestID'
			FROM inbox ON CONFLICT (event_id) DO NOTHING`;
	},
	ownInbox: true,
};

interface TimelineRow {
	event_id: string;
	event_name: string;
	occurred_at: Date;
	producer_service: string;
	producer_node: string;
	data: Record<string, unknown>;
}

const AuditService: ServiceSchema<ServiceSettingSchema, Record<string, any>, Record<string, any>, EventsService> = {
	name: "audit",
	mixins: [
		DbMixin({
			model: {
				name: "audit_log",
				define: {
					seq: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true },
					eventId: { type: DataTypes.UUID, allowNull: false, unique: true },
					eventName: { type: DataTypes.TEXT, allowNull: false },
				},
			},
			migrations: [
				{
					id: "audit-001-audit-log",
					sql: `
						CREATE TABLE audit_log (
							seq bigserial PRIMARY KEY,
							event_id uuid NOT NULL UNIQUE,
							event_name text NOT NULL,
							correlation_id text,
							causation_id uuid,
							producer_service text NOT NULL,
							producer_node text NOT NULL,
							occurred_at timestamptz NOT NULL,
							data jsonb NOT NULL,
							trace_id text,
							recorded_at timestamptz NOT NULL DEFAULT now()
						);
						CREATE INDEX audit_log_correlation ON audit_log (correlation_id, occurred_at, seq);`,
				},
			],
		}),
		EventsMixin({ handlers: Object.fromEntries(DOMAIN_EVENTS.map(name => [name, record])), sink: true }),
	],
	actions: {
		/** An order's domain events in the order they happened (SPEC: GET /orders/:id/timeline). */
		timeline: {
			params: { orderId: { type: "uuid" } },
			async handler(ctx: Context<{ orderId: string }>) {
				const rows = await this.sql<TimelineRow>(
					`SELECT event_id, event_name, occurred_at, producer_service, producer_node, data
					 FROM ${this.table("audit_log")} WHERE correlation_id = :orderId ORDER BY occurred_at, seq`,
					{ orderId: ctx.params.orderId },
				);
				return rows.map(r => ({
					eventId: r.event_id,
					eventName: r.event_name,
					occurredAt: new Date(r.occurred_at).toISOString(),
					producer: { service: r.producer_service, nodeID: r.producer_node },
					data: r.data,
				}));
			},
		},
	},
};

export default AuditService;
