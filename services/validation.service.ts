import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Transaction } from "../lib/transactions";
import { DbMixin } from "../mixins/db.mixin";
import { EventsMixin, type EventsService } from "../mixins/events.mixin";
import { runtimeOf } from "../lib/runtime";
import { isUniqueViolation } from "../lib/sql";
import { BusinessRuleError, ConflictError } from "../lib/errors";
import { pageParams } from "../lib/paging";
import { CART_ITEMS_RULE, checkCart, type CartError, type CartItemInput, type CatalogueEntry } from "../lib/domain/cart";
import { applyPromotion, normalizeCode, type Promotion } from "../lib/domain/promotion";
import { computeTotals } from "../lib/domain/totals";
import type { VoucherCheck } from "./voucher.service";

interface PromotionRow {
	code: string;
	type: "PERCENT" | "FIXED";
	value: string;
	min_subtotal: string | null;
	starts_at: Date | null;
	ends_at: Date | null;
	max_redemptions: number | null;
	redemptions: number;
	created_at: Date;
}

const toPromotion = (r: PromotionRow): Promotion => ({
	code: r.code,
	type: r.type,
	value: Number(r.value),
	minSubtotal: r.min_subtotal === null ? null : Number(r.min_subtotal),
	startsAt: r.starts_at,
	endsAt: r.ends_at,
	maxRedemptions: r.max_redemptions,
	redemptions: r.redemptions,
});
const toPromotionView = (r: PromotionRow) => ({
	...toPromotion(r),
	startsAt: r.starts_at ? new Date(r.starts_at).toISOString() : null,
	endsAt: r.ends_at ? new Date(r.ends_at).toISOString() : null,
	createdAt: new Date(r.created_at).toISOString(),
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface CartValidation {
	valid: boolean;
	errors: Array<Pick<CartError, "message" | "productId" | "field"> & { code: string }>;
	lines: ReturnType<typeof checkCart>["lines"];
	subtotal: number;
	discount: number;
	voucherDiscount: number;
	total: number;
	currency: string;
}

type ValidationThis = EventsService & {
	promotion(code: string): Promise<Promotion | undefined>;
	releaseRedemption(orderId: string, tx: Transaction): Promise<void>;
};

/**
 * Cart validation (SPEC section 6): products, prices, quantities and stock from the inventory's
 * cached availability, one promo code, the caller's vouchers, totals in cents. Every failing rule
 * is listed. It also owns the promotions and counts their redemptions against the cap atomically.
 */
const ValidationService: ServiceSchema<ServiceSettingSchema, Record<string, any>, Record<string, any>, ValidationThis> = {
	name: "validation",
	mixins: [
		DbMixin({
			migrations: [
				{
					id: "validation-001-promotions",
					sql: `
						CREATE TABLE promotions (
							code text PRIMARY KEY,
							type text NOT NULL CHECK (type IN ('PERCENT', 'FIXED')),
							value bigint NOT NULL CHECK (value > 0 AND (type = 'FIXED' OR value <= 100)),
							min_subtotal bigint CHECK (min_subtotal >= 0),
							starts_at timestamptz,
							ends_at timestamptz,
							max_redemptions integer CHECK (max_redemptions > 0),
							redemptions integer NOT NULL DEFAULT 0 CHECK (redemptions >= 0 AND (max_redemptions IS NULL OR redemptions <= max_redemptions)),
							created_at timestamptz NOT NULL DEFAULT now()
						);
						CREATE TABLE promotion_redemptions (
							order_id uuid PRIMARY KEY,
							code text NOT NULL REFERENCES promotions (code),
							released boolean NOT NULL DEFAULT false,
							created_at timestamptz NOT NULL DEFAULT now()
						);
						INSERT INTO promotions (code, type, value) VALUES ('PROMO10', 'PERCENT', 10);`,
				},
			],
		}),
		EventsMixin({
			handlers: {
				async "order.failed"(event, { tx }) {
					await (this as ValidationThis).releaseRedemption(event.data.orderId, tx);
				},
				async "order.cancelled"(event, { tx }) {
					await (this as ValidationThis).releaseRedemption(event.data.orderId, tx);
				},
			},
		}),
	],

	actions: {
		/** Always an answer for a well-formed cart: `valid` and every error, with the priced lines and totals. */
		validate: {
			params: {
				items: CART_ITEMS_RULE,
				promoCodes: { type: "array", items: { type: "string", min: 1, max: 64 }, max: 10, optional: true, default: [] },
				voucherCodes: { type: "array", items: { type: "string", min: 1, max: 64 }, max: 10, optional: true, default: [] },
				userId: { type: "string", min: 1, optional: true },
				orderId: { type: "uuid", optional: true },
			},
			async handler(ctx: Context<{ items: CartItemInput[]; promoCodes: string[]; voucherCodes: string[]; userId?: string; orderId?: string }>): Promise<CartValidation> {
				const { items, promoCodes, voucherCodes, userId, orderId } = ctx.params;
				const currency = runtimeOf(this.broker).config.storeCurrency;
				const ids = [...new Set(items.map(i => i.productId).filter(id => UUID.test(id)))];
				const entries = ids.length > 0 ? await ctx.call<CatalogueEntry[], { productIds: string[] }>("inventory.availability", { productIds: ids }) : [];
				const cart = checkCart(items, new Map(entries.map(e => [e.id, e])), currency);
				const errors: CartValidation["errors"] = [...cart.errors];

				let discount = 0;
				if (promoCodes.length > 1) {
					errors.push({ code: "TOO_MANY_PROMO_CODES", message: "At most one promo code per order", field: "promoCodes" });
				} else if (promoCodes.length === 1) {
					const code = normalizeCode(promoCodes[0]);
					const result = applyPromotion(await this.promotion(code), code, cart.subtotal, new Date());
					if (result.ok) discount = result.discount;
					else errors.push({ code: result.code, message: result.message, field: "promoCodes[0]" });
				}

				const voucherAmounts: number[] = [];
				if (voucherCodes.length > 0) {
					const checks: VoucherCheck[] = userId
						? await ctx.call<VoucherCheck[], Record<string, unknown>>("voucher.check", { userId, codes: voucherCodes, orderId })
						: voucherCodes.map(code => ({ code, ok: false, message: `Sign in to use voucher ${code}` }));
					checks.forEach((c, i) => {
						if (c.ok) voucherAmounts.push(c.amount!);
						else errors.push({ code: "VOUCHER_INVALID", message: c.message!, field: `voucherCodes[${i}]` });
					});
				}

				return { valid: errors.length === 0, errors, lines: cart.lines, ...computeTotals(cart.subtotal, discount, voucherAmounts), currency };
			},
		},

		/** Counts one redemption of a promo code for an order, within its cap; once per order. */
		redeemPromotion: {
			params: { code: { type: "string", min: 1, max: 64 }, orderId: { type: "uuid" } },
			async handler(ctx: Context<{ code: string; orderId: string }>) {
				const code = normalizeCode(ctx.params.code);
				const { orderId } = ctx.params;
				return this.transaction(async tx => {
					const [existing] = await this.sql<{ code: string }>(`SELECT code FROM ${this.table("promotion_redemptions")} WHERE order_id = :orderId`, { orderId }, tx);
					if (existing) return { code: existing.code, orderId };
					const counted = await this.sql(
						`UPDATE ${this.table("promotions")} SET redemptions = redemptions + 1
						 WHERE code = :code AND (max_redemptions IS NULL OR redemptions < max_redemptions)
						   AND (starts_at IS NULL OR starts_at <= now()) AND (ends_at IS NULL OR ends_at > now()) RETURNING code`,
						{ code },
						tx,
					);
					if (counted.length === 0) throw new BusinessRuleError("PROMO_INVALID", `Promo code ${code} cannot be used`, { code });
					await this.sql(`INSERT INTO ${this.table("promotion_redemptions")} (order_id, code) VALUES (:orderId, :code)`, { orderId, code }, tx);
					return { code, orderId };
				});
			},
		},

		/** Gives back the redemption an order held (its creation did not go through). */
		releasePromotion: {
			params: { orderId: { type: "uuid" } },
			async handler(ctx: Context<{ orderId: string }>) {
				await this.transaction(tx => this.releaseRedemption(ctx.params.orderId, tx));
			},
		},

		createPromotion: {
			retryPolicy: { enabled: false },
			params: {
				code: { type: "string", min: 2, max: 32, pattern: /^[A-Za-z0-9_-]+$/ },
				type: { type: "enum", values: ["PERCENT", "FIXED"] },
				value: { type: "number", integer: true, min: 1, max: 1_000_000_000 },
				minSubtotal: { type: "number", integer: true, min: 0, optional: true },
				startsAt: { type: "date", convert: true, optional: true },
				endsAt: { type: "date", convert: true, optional: true },
				maxRedemptions: { type: "number", integer: true, min: 1, optional: true },
			},
			async handler(ctx: Context<{ code: string; type: "PERCENT" | "FIXED"; value: number; minSubtotal?: number; startsAt?: Date; endsAt?: Date; maxRedemptions?: number }>) {
				const p = ctx.params;
				if (p.type === "PERCENT" && p.value > 100) throw new BusinessRuleError("PROMO_VALUE_INVALID", "A percent promotion takes 1 to 100", { value: p.value });
				if (p.startsAt && p.endsAt && p.endsAt <= p.startsAt) throw new BusinessRuleError("PROMO_WINDOW_INVALID", "endsAt must be after startsAt");
				try {
					const [row] = await this.sql<PromotionRow>(
						`INSERT INTO ${this.table("promotions")} (code, type, value, min_subtotal, starts_at, ends_at, max_redemptions)
						 VALUES (:code, :type, :value, :minSubtotal, :startsAt, :endsAt, :maxRedemptions) RETURNING *`,
						{ ...p, code: normalizeCode(p.code), minSubtotal: p.minSubtotal ?? null, startsAt: p.startsAt ?? null, endsAt: p.endsAt ?? null, maxRedemptions: p.maxRedemptions ?? null },
					);
					return toPromotionView(row);
				} catch (err) {
					if (isUniqueViolation(err)) throw new ConflictError("PROMO_EXISTS", `Promo code ${normalizeCode(p.code)} exists`);
					throw err;
				}
			},
		},

		listPromotions: {
			params: { ...pageParams },
			async handler(ctx: Context<{ page: number; pageSize: number }>) {
				const { page, pageSize } = ctx.params;
				return this.paged({ table: this.table("promotions"), orderBy: "created_at DESC, code" }, {}, { page, pageSize }, toPromotionView);
			},
		},
	},

	methods: {
		async promotion(code: string) {
			const [row] = await this.sql<PromotionRow>(`SELECT * FROM ${this.table("promotions")} WHERE code = :code`, { code });
			return row ? toPromotion(row) : undefined;
		},

		/** A failed or cancelled order gives its redemption back, once. */
		async releaseRedemption(orderId: string, tx: Transaction) {
			const released = await this.sql<{ code: string }>(
				`UPDATE ${this.table("promotion_redemptions")} SET released = true WHERE order_id = :orderId AND NOT released RETURNING code`,
				{ orderId },
				tx,
			);
			if (released.length > 0) {
				await this.sql(`UPDATE ${this.table("promotions")} SET redemptions = redemptions - 1 WHERE code = :code`, { code: released[0].code }, tx);
			}
		},
	},
};

export default ValidationService;
