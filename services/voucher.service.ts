import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Transaction } from "../lib/transactions";
import { DbMixin } from "../mixins/db.mixin";
import { EventsMixin, typedHandler, type EventsService, type HandlerWithOptions } from "../mixins/events.mixin";
import { runtimeOf } from "../lib/runtime";
import { BusinessRuleError } from "../lib/errors";
import { pageParams } from "../lib/paging";
import { generateVoucherCode, mayHoldVouchers, qualifiesForVoucher, voucherExpiry } from "../lib/domain/voucher";
import type { DomainEvent } from "../lib/events/envelope";
import type { EventPayloads } from "../lib/events/catalogue";
import { newId } from "../lib/ids";

interface VoucherRow {
	id: string;
	code: string;
	user_id: string;
	order_id: string;
	amount: string;
	currency: string;
	status: "ACTIVE" | "REDEEMED";
	expires_at: Date;
	held_by: string | null;
	redeemed_by: string | null;
	created_at: Date;
}

/** EXPIRED is derived from the date, so a voucher expires on time without a sweep. */
const statusOf = (r: VoucherRow, now = new Date()) => (r.status === "ACTIVE" && new Date(r.expires_at) <= now ? "EXPIRED" : r.status);
const toVoucher = (r: VoucherRow) => ({
	id: r.id,
	code: r.code,
	amount: Number(r.amount),
	currency: r.currency,
	status: statusOf(r),
	orderId: r.order_id,
	expiresAt: new Date(r.expires_at).toISOString(),
	createdAt: new Date(r.created_at).toISOString(),
});

export interface VoucherCheck {
	code: string;
	ok: boolean;
	amount?: number;
	message?: string;
}

const codesRule = { type: "array", items: { type: "string", min: 1, max: 64 }, max: 10 } as const;
const MAX_CODE_ATTEMPTS = 5;

type VoucherThis = EventsService & {
	issueFor(event: DomainEvent, tx: Transaction): Promise<void>;
	checkCodes(userId: string, codes: string[], orderId?: string, tx?: Transaction): Promise<VoucherCheck[]>;
	restore(orderId: string, tx: Transaction): Promise<void>;
};

/** Whether an order's status event may touch its vouchers (its `voucherCodes`): nothing to do, and no transaction, when it holds none. */
const holdsVouchers = (event: DomainEvent) => mayHoldVouchers((event.data as EventPayloads["order.confirmed"]).voucherCodes);

/** An order that ended gives back what it held. */
const restoreHeld: HandlerWithOptions = {
	concerns: holdsVouchers,
	async handle(event, { tx }) {
		await (this as VoucherThis).restore(event.data.orderId, tx);
	},
};

/**
 * Vouchers (SPEC section 6): one per qualifying order when it is dispatched, with a crypto-random
 * code; held by an order that uses it, REDEEMED when that order is confirmed, ACTIVE again if it
 * fails or is cancelled. A unique index on the issuing order makes redelivery harmless.
 */
const VoucherService: ServiceSchema<ServiceSettingSchema, Record<string, any>, Record<string, any>, VoucherThis> = {
	name: "voucher",
	mixins: [
		DbMixin({
			migrations: [
				{
					id: "voucher-001-vouchers",
					sql: `
						CREATE TABLE vouchers (
							id uuid PRIMARY KEY,
							code text NOT NULL UNIQUE,
							user_id text NOT NULL,
							order_id uuid NOT NULL UNIQUE,
							amount bigint NOT NULL CHECK (amount > 0),
							currency char(3) NOT NULL,
							status text NOT NULL CHECK (status IN ('ACTIVE', 'REDEEMED')),
							expires_at timestamptz NOT NULL,
							held_by uuid,
							redeemed_by uuid,
							created_at timestamptz NOT NULL DEFAULT clock_timestamp()
						);
						CREATE INDEX vouchers_by_user ON vouchers (user_id, created_at DESC);
						CREATE INDEX vouchers_held_by ON vouchers (held_by) WHERE held_by IS NOT NULL;`,
				},
			],
		}),
		EventsMixin({
			handlers: {
				"order.dispatched": typedHandler<"order.dispatched">({
					concerns(event) {
						return qualifiesForVoucher(event.data.total, runtimeOf(this.broker).config.voucherThresholdCents);
					},
					async handle(event, { tx }) {
						await (this as VoucherThis).issueFor(event, tx);
					},
				}),
				// Redeems what the order held.
				"order.confirmed": {
					concerns: holdsVouchers,
					setStatement() {
						return `UPDATE ${this.table("vouchers")} SET status = 'REDEEMED', redeemed_by = held_by WHERE held_by IN (SELECT (envelope->'data'->>'orderId')::uuid FROM inbox) AND status = 'ACTIVE'`;
					},
				},
				"order.failed": typedHandler<"order.failed">(restoreHeld),
				"order.cancelled": typedHandler<"order.cancelled">(restoreHeld),
			},
		}),
	],

	actions: {
		/** The caller's vouchers, newest first. */
		list: {
			params: { userId: { type: "string", min: 1 }, ...pageParams },
			async handler(ctx: Context<{ userId: string; page: number; pageSize: number }>) {
				return this.paged({ table: this.table("vouchers"), where: "user_id = :userId", orderBy: "created_at DESC, id" }, { userId: ctx.params.userId }, ctx.params, toVoucher);
			},
		},

		/** Whether each code can pay part of this user's order now (validation's question). */
		check: {
			params: { userId: { type: "string", min: 1 }, codes: codesRule, orderId: { type: "uuid", optional: true } },
			handler(ctx: Context<{ userId: string; codes: string[]; orderId?: string }>) {
				return this.checkCodes(ctx.params.userId, ctx.params.codes, ctx.params.orderId);
			},
		},

		/** Lets go of what an order held (its creation did not go through). */
		release: {
			params: { orderId: { type: "uuid" } },
			async handler(ctx: Context<{ orderId: string }>) {
				await this.transaction(tx => this.restore(ctx.params.orderId, tx));
			},
		},

		/** Holds every code for an order, or none (VOUCHER_INVALID names the failing codes). Idempotent. */
		hold: {
			params: { userId: { type: "string", min: 1 }, codes: codesRule, orderId: { type: "uuid" } },
			async handler(ctx: Context<{ userId: string; codes: string[]; orderId: string }>) {
				const { userId, codes, orderId } = ctx.params;
				if (codes.length === 0) return { held: [] };
				return this.transaction(async tx => {
					await this.sql(`SELECT 1 FROM ${this.table("vouchers")} WHERE code = ANY(ARRAY[:codes]::text[]) ORDER BY id FOR UPDATE`, { codes }, tx);
					const checks = await this.checkCodes(userId, codes, orderId, tx);
					const refused = checks.filter(c => !c.ok);
					if (refused.length > 0) throw new BusinessRuleError("VOUCHER_INVALID", refused.map(c => c.message).join("; "), { codes: refused.map(c => c.code) });
					await this.sql(`UPDATE ${this.table("vouchers")} SET held_by = :orderId WHERE code = ANY(ARRAY[:codes]::text[])`, { orderId, codes }, tx);
					return { held: checks.map(c => ({ code: c.code, amount: c.amount })) };
				});
			},
		},
	},

	methods: {
		async checkCodes(userId: string, codes: string[], orderId?: string, tx?: Transaction) {
			const rows = codes.length
				? await this.sql<VoucherRow>(`SELECT * FROM ${this.table("vouchers")} WHERE code = ANY(ARRAY[:codes]::text[])`, { codes }, tx)
				: [];
			const byCode = new Map(rows.map(r => [r.code, r]));
			const seen = new Set<string>();
			return codes.map((code): VoucherCheck => {
				const r = byCode.get(code);
				const refuse = (message: string) => ({ code, ok: false, message });
				// Another user's voucher reads as unknown: its existence is not theirs to learn.
				if (!r || r.user_id !== userId) return refuse(`Voucher ${code} does not exist`);
				if (seen.has(code)) return refuse(`Voucher ${code} is named twice`);
				seen.add(code);
				const status = statusOf(r);
				if (status === "EXPIRED") return refuse(`Voucher ${code} has expired`);
				if (status === "REDEEMED") return refuse(`Voucher ${code} has been used`);
				if (r.held_by && r.held_by !== orderId) return refuse(`Voucher ${code} is held by another order`);
				return { code, ok: true, amount: Number(r.amount) };
			});
		},

		async restore(orderId: string, tx: Transaction) {
			await this.sql(`UPDATE ${this.table("vouchers")} SET status = 'ACTIVE', held_by = NULL, redeemed_by = NULL WHERE held_by = :orderId`, { orderId }, tx);
		},

		/** A dispatched order's voucher (the handler's `concerns` lets only qualifying orders through): one per order; a unique code, drawn again on the rare collision. */
		async issueFor(event: DomainEvent, tx: Transaction) {
			const { config } = runtimeOf(this.broker);
			const { orderId, userId } = event.data as { orderId: string; userId: string };
			const issuedAt = new Date();
			for (let attempt = 1; ; attempt++) {
				const id = newId();
				const code = generateVoucherCode();
				const inserted = await this.sql<VoucherRow>(
					`INSERT INTO ${this.table("vouchers")} (id, code, user_id, order_id, amount, currency, status, expires_at)
					 VALUES (:id, :code, :userId, :orderId, :amount, :currency, 'ACTIVE', :expiresAt)
					 ON CONFLICT DO NOTHING RETURNING *`,
					{ id, code, userId, orderId, amount: config.voucherAmountCents, currency: config.storeCurrency, expiresAt: voucherExpiry(issuedAt, config.voucherTtlDays) },
					tx,
				);
				if (inserted.length > 0) {
					this.publishEvent(tx, "voucher.issued", { voucherId: id, code, userId, orderId, amount: config.voucherAmountCents, currency: config.storeCurrency }, {
						causedBy: event,
						key: orderId,
					});
					return;
				}
				const [forOrder] = await this.sql(`SELECT 1 FROM ${this.table("vouchers")} WHERE order_id = :orderId`, { orderId }, tx);
				if (forOrder) return; // this order has its voucher already
				if (attempt >= MAX_CODE_ATTEMPTS) throw new Error(`no unique voucher code after ${attempt} draws`);
			}
		},
	},
};

export default VoucherService;
