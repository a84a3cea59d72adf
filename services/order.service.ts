import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Transaction } from "sequelize";
import { createHash, randomUUID } from "node:crypto";
import { DbMixin } from "../mixins/db.mixin";
import { EventsMixin, type DomainEventHandler, type EventsService } from "../mixins/events.mixin";
import { contextOf } from "../mixins/db.mixin";
import { runtimeOf } from "../lib/runtime";
import { BusinessRuleError, ConflictError, NotFoundError } from "../lib/errors";
import { offsetOf, pageOf, pageParams } from "../lib/paging";
import { GATEWAY_CALL } from "../lib/timeouts";
import { divRoundHalfUp } from "../lib/domain/money";
import { runEvery, type Periodic } from "../lib/periodic";
import { queueVerdict, type QueueProgress } from "../lib/domain/backlog";
import { countMetric, observeMetric } from "../lib/metrics";
import { ORDER_STATUSES, canTransition, isPreDispatch, type OrderStatus } from "../lib/domain/order-status";
import type { DomainEvent } from "../lib/events/envelope";
import type { CartValidation } from "./validation.service";
import { CART_ITEMS_RULE, type PricedLine } from "../lib/domain/cart";
import type { AuthorizeResult, PaymentMethod } from "./payment.service";
import type { CommitResult, ReserveResult } from "./inventory.service";

type PaymentStatus = "NOT_STARTED" | "PENDING" | "AUTHORIZED" | "FAILED" | "REFUND_PENDING" | "REFUNDED" | "REFUND_FAILED";

interface OrderRow {
	id: string;
	user_id: string;
	status: OrderStatus;
	payment_status: PaymentStatus;
	items: PricedLine[];
	subtotal: string;
	discount: string;
	voucher_discount: string;
	total: string;
	currency: string;
	promo_codes: string[];
	voucher_codes: string[];
	shipping_address: Record<string, string>;
	customer: { name?: string; email?: string } | null;
	payment_method: PaymentMethod | null;
	card_token: string | null;
	payment_id: string | null;
	payment_failure_reason: string | null;
	failure_code: string | null;
	failure_reason: string | null;
	failure_details: unknown;
	courier: string | null;
	tracking_number: string | null;
	idempotency_key: string | null;
	request_hash: string | null;
	redrives: number;
	created_at: Date;
	updated_at: Date;
}

interface Change {
	reason?: string;
	/** Column → value, written with the status. */
	set?: Record<string, unknown>;
}

/** The domain event each status announces (PAYMENT_PENDING and PAYMENT_SUCCESS are announced by the events that cause them). */
const STATUS_EVENT: Partial<Record<OrderStatus, string>> = {
	FAILED: "order.failed",
	PAYMENT_FAILED: "order.failed",
	CONFIRMED: "order.confirmed",
	DISPATCHED: "order.dispatched",
	COMPLETED: "order.completed",
	CANCELLED: "order.cancelled",
};
const SUCCESSFUL = ["CONFIRMED", "DISPATCHED", "COMPLETED"];
/** Where a checkout ends, for the orders metric (DISPATCHED is a step of fulfilment, not an outcome). */
const FINAL_STEPS = new Set<OrderStatus>(["CONFIRMED", "COMPLETED", "FAILED", "PAYMENT_FAILED", "CANCELLED"]);
const MAX_REDRIVES = 5;
/** The saga's Kafka consumers whose queue an order can wait in, by the step it waits in. */
const SAGA_CONSUMERS: Record<string, string[]> = {
	inventory: ["order.created", "payment.authorized"],
	order: ["stock.reserved", "stock.failed", "stock.committed"],
};
const QUEUED_STEPS = new Set<OrderStatus>(["CREATED", "PAYMENT_SUCCESS"]);

const addressRule = {
	type: "object",
	strict: "remove",
	props: {
		name: { type: "string", min: 1, max: 200, trim: true },
		line1: { type: "string", min: 1, max: 200, trim: true },
		line2: { type: "string", max: 200, optional: true },
		city: { type: "string", min: 1, max: 100, trim: true },
		postalCode: { type: "string", min: 1, max: 20, trim: true },
		country: { type: "string", length: 2, uppercase: true },
	},
} as const;
const paymentRule = {
	type: "object",
	strict: "remove",
	optional: true,
	props: { method: { type: "enum", values: ["WALLET", "CARD"] }, cardToken: { type: "string", min: 1, max: 200, optional: true } },
} as const;

type CreateParams = {
	userId: string;
	items: Array<{ productId: string; quantity: number; price?: number }>;
	promoCodes: string[];
	voucherCodes: string[];
	shippingAddress: Record<string, string>;
	customer?: { name?: string; email?: string };
	payment?: { method: PaymentMethod; cardToken?: string };
	idempotencyKey?: string;
};

type OrderThis = EventsService & {
	watchdogRun?: Periodic;
	queueProgress: Record<string, QueueProgress>;
	sagaQueueMoving(): Promise<boolean>;
	stepTimeoutMs(): number;
	lockOrder(orderId: string, tx: Transaction): Promise<OrderRow | undefined>;
	view(order: OrderRow): Promise<ReturnType<typeof toOrder>>;
	findOwned(orderId: string, userId?: string): Promise<OrderRow>;
	transition(tx: Transaction, order: OrderRow, to: OrderStatus, change?: Change, cause?: DomainEvent): Promise<OrderRow>;
	react(orderId: string, cause: DomainEvent | undefined, tx: Transaction, fn: (order: OrderRow) => Promise<unknown>): Promise<void>;
	requestRefund(orderId: string, reason: string): Promise<void>;
	recordRefundEnd(orderId: string, status: "REFUNDED" | "REFUND_FAILED", opts: { tx?: Transaction; pendingOnly?: boolean }): Promise<void>;
	startPayment(orderId: string, ctx?: Context): Promise<AuthorizeResult | undefined>;
	applyPayment(orderId: string, result: AuthorizeResult, ctx?: Context): Promise<OrderRow>;
	refundLatePayment(tx: Transaction, order: OrderRow, paymentId: string): Promise<void>;
	onReserved(tx: Transaction, order: OrderRow, expiresAt: string, cause?: DomainEvent): Promise<void>;
	onReservationFailed(tx: Transaction, order: OrderRow, lines: unknown, cause?: DomainEvent): Promise<void>;
	onCommitted(tx: Transaction, order: OrderRow, cause?: DomainEvent): Promise<void>;
	onReservationGone(tx: Transaction, order: OrderRow, cause?: DomainEvent): Promise<void>;
	redrive(orderId: string): Promise<void>;
	watchdog(): Promise<void>;
};

const toOrder = (o: OrderRow, history: Array<{ status: string; at: Date; reason: string | null }>) => ({
	id: o.id,
	userId: o.user_id,
	status: o.status,
	paymentStatus: o.payment_status,
	// jsonb keeps keys in its own order; answer them in the contract's.
	items: o.items.map(l => ({ productId: l.productId, sku: l.sku, name: l.name, quantity: l.quantity, unitPrice: l.unitPrice, lineTotal: l.lineTotal })),
	subtotal: Number(o.subtotal),
	discount: Number(o.discount),
	voucherDiscount: Number(o.voucher_discount),
	total: Number(o.total),
	currency: o.currency,
	promoCodes: o.promo_codes,
	voucherCodes: o.voucher_codes,
	shippingAddress: o.shipping_address,
	customer: o.customer ?? undefined,
	payment: { method: o.payment_method ?? undefined, paymentId: o.payment_id ?? undefined, failureReason: o.payment_failure_reason ?? undefined },
	failureReason: o.failure_reason ?? undefined,
	failureCode: o.failure_code ?? undefined,
	failureDetails: o.failure_details ?? undefined,
	shipment: o.courier ? { courier: o.courier, trackingNumber: o.tracking_number } : undefined,
	statusHistory: history.map(h => ({ status: h.status, at: new Date(h.at).toISOString(), reason: h.reason ?? undefined })),
	createdAt: new Date(o.created_at).toISOString(),
	updatedAt: new Date(o.updated_at).toISOString(),
});

/** Runs a saga reaction on the order named by the event, inside the event's transaction. */
const reaction =
	(fn: (self: OrderThis, tx: Transaction, order: OrderRow, event: DomainEvent) => Promise<unknown>): DomainEventHandler =>
	async function (event, { tx }) {
		const self = this as OrderThis;
		await self.react(event.data.orderId, event, tx, order => fn(self, tx, order, event));
	};

/**
 * Orders and their saga (SPEC section 5). Creation validates synchronously, holds promo and
 * vouchers, and writes the order with `order.created` in one transaction; every later step is a
 * reaction to an event, and every transition is checked against the state machine, recorded in
 * the history and announced. A watchdog re-drives steps past their deadline through idempotent
 * actions (reserve, authorize, commit), and compensates after MAX_REDRIVES tries.
 */
const OrderService: ServiceSchema<ServiceSettingSchema, Record<string, any>, Record<string, any>, OrderThis> = {
	name: "order",
	mixins: [
		DbMixin({
			migrations: [
				{
					id: "order-001-orders-history",
					sql: `
						CREATE TABLE orders (
							id uuid PRIMARY KEY,
							user_id text NOT NULL,
							status text NOT NULL CHECK (status IN (${ORDER_STATUSES.map(s => `'${s}'`).join(", ")})),
							payment_status text NOT NULL,
							items jsonb NOT NULL,
							subtotal bigint NOT NULL CHECK (subtotal >= 0),
							discount bigint NOT NULL CHECK (discount >= 0),
							voucher_discount bigint NOT NULL CHECK (voucher_discount >= 0),
							total bigint NOT NULL CHECK (total >= 0),
							currency char(3) NOT NULL,
							promo_codes jsonb NOT NULL DEFAULT '[]',
							voucher_codes jsonb NOT NULL DEFAULT '[]',
							shipping_address jsonb NOT NULL,
							customer jsonb,
							payment_method text,
							card_token text,
							payment_id uuid,
							payment_failure_reason text,
							failure_code text,
							failure_reason text,
							failure_details jsonb,
							courier text,
							tracking_number text,
							idempotency_key text,
							request_hash text,
							step_deadline timestamptz,
							redrives integer NOT NULL DEFAULT 0,
							created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
							updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
						);
						CREATE UNIQUE INDEX orders_idempotency ON orders (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
						CREATE INDEX orders_by_user ON orders (user_id, created_at DESC);
						CREATE INDEX orders_by_status ON orders (status, created_at DESC);
						CREATE INDEX orders_due ON orders (step_deadline) WHERE step_deadline IS NOT NULL;
						CREATE TABLE order_status_history (
							id bigserial PRIMARY KEY,
							order_id uuid NOT NULL REFERENCES orders (id),
							status text NOT NULL,
							reason text,
							at timestamptz NOT NULL DEFAULT clock_timestamp()
						);
						CREATE INDEX order_history_by_order ON order_status_history (order_id, id);`,
				},
			],
		}),
		EventsMixin({
			handlers: {
				"stock.reserved": reaction((self, tx, order, e) => self.onReserved(tx, order, e.data.expiresAt, e)),
				"stock.failed": reaction((self, tx, order, e) => self.onReservationFailed(tx, order, e.data.lines, e)),
				"stock.committed": reaction((self, tx, order, e) => self.onCommitted(tx, order, e)),
				"stock.released": reaction(async (self, tx, order, e) => {
					if (e.data.reason === "EXPIRED") await self.onReservationGone(tx, order, e);
				}),
				"payment.authorized": reaction(async (self, tx, order, e) => {
					if (order.status === "PAYMENT_PENDING") {
						await self.transition(tx, order, "PAYMENT_SUCCESS", { set: { payment_status: "AUTHORIZED", payment_id: e.data.paymentId, card_token: null } }, e);
					} else {
						await self.refundLatePayment(tx, order, e.data.paymentId);
					}
				}),
				"payment.failed": reaction(async (self, tx, order, e) => {
					if (order.status !== "PAYMENT_PENDING") return;
					await self.transition(tx, order, "PAYMENT_FAILED", { reason: e.data.code, set: { payment_status: "FAILED", payment_failure_reason: e.data.reason, failure_code: e.data.code, failure_reason: e.data.reason, card_token: null } }, e);
				}),
				"payment.refunded": reaction((self, tx, order) => self.recordRefundEnd(order.id, "REFUNDED", { tx })),
				"payment.refund_failed": reaction((self, tx, order) => self.recordRefundEnd(order.id, "REFUND_FAILED", { tx })),
			},
		}),
	],

	actions: {
		/** Creates an order after synchronous validation; with the same Idempotency-Key and body, answers the first order. */
		create: {
			params: {
				userId: { type: "string", min: 1, max: 200 },
				items: { ...CART_ITEMS_RULE, min: 1 },
				promoCodes: { type: "array", items: { type: "string", min: 1, max: 64 }, max: 10, optional: true, default: [] },
				voucherCodes: { type: "array", items: { type: "string", min: 1, max: 64 }, max: 10, optional: true, default: [] },
				shippingAddress: addressRule,
				customer: { type: "object", strict: "remove", optional: true, props: { name: { type: "string", max: 200, optional: true }, email: { type: "email", optional: true } } },
				payment: paymentRule,
				idempotencyKey: { type: "string", min: 1, max: 200, optional: true },
			},
			retryPolicy: { enabled: false }, // idempotent only with a key; without one a retry would create a second order
			async handler(ctx: Context<CreateParams>) {
				const { userId, idempotencyKey, ...body } = ctx.params;
				if (body.payment?.method === "CARD" && !body.payment.cardToken) throw new BusinessRuleError("CARD_TOKEN_REQUIRED", "A card payment needs a cardToken");
				const requestHash = createHash("sha256").update(JSON.stringify(body)).digest("hex");
				const replay = async () => {
					const [existing] = await this.sql<OrderRow>(`SELECT * FROM ${this.table("orders")} WHERE user_id = :userId AND idempotency_key = :idempotencyKey`, { userId, idempotencyKey });
					if (!existing) return undefined;
					if (existing.request_hash !== requestHash) throw new ConflictError("IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was used with another request body");
					return { ...(await this.view(existing)), replayed: true };
				};
				if (idempotencyKey) {
					const previous = await replay();
					if (previous) return previous;
				}

				const check = await ctx.call<CartValidation, Record<string, unknown>>("validation.validate", { items: body.items, promoCodes: body.promoCodes, voucherCodes: body.voucherCodes, userId });
				if (!check.valid) throw new BusinessRuleError("CART_INVALID", "The cart is not valid", { errors: check.errors });

				const orderId = randomUUID();
				const holds: Array<() => Promise<unknown>> = [];
				try {
					if (body.promoCodes.length > 0) {
						await ctx.call("validation.redeemPromotion", { code: body.promoCodes[0], orderId });
						holds.push(() => ctx.call("validation.releasePromotion", { orderId }));
					}
					if (body.voucherCodes.length > 0) {
						holds.push(() => ctx.call("voucher.release", { orderId }));
						await ctx.call("voucher.hold", { userId, codes: body.voucherCodes, orderId });
					}
					const row = await this.transaction(async tx => {
						const [order] = await this.sql<OrderRow>(
							`INSERT INTO ${this.table("orders")} (id, user_id, status, payment_status, items, subtotal, discount, voucher_discount, total, currency, promo_codes, voucher_codes,
							   shipping_address, customer, payment_method, card_token, idempotency_key, request_hash, step_deadline)
							 VALUES (:id, :userId, 'CREATED', :paymentStatus, :items, :subtotal, :discount, :voucherDiscount, :total, :currency, :promoCodes, :voucherCodes,
							   :shippingAddress, :customer, :method, :cardToken, :idempotencyKey, :requestHash, now() + make_interval(secs => :s)) RETURNING *`,
							{
								id: orderId,
								userId,
								paymentStatus: body.payment ? "PENDING" : "NOT_STARTED",
								items: JSON.stringify(check.lines),
								subtotal: check.subtotal,
								discount: check.discount,
								voucherDiscount: check.voucherDiscount,
								total: check.total,
								currency: check.currency,
								promoCodes: JSON.stringify(body.promoCodes.map(c => c.trim().toUpperCase())),
								voucherCodes: JSON.stringify(body.voucherCodes),
								shippingAddress: JSON.stringify(body.shippingAddress),
								customer: body.customer ? JSON.stringify(body.customer) : null,
								method: body.payment?.method ?? null,
								cardToken: body.payment?.cardToken ?? null,
								idempotencyKey: idempotencyKey ?? null,
								requestHash,
								s: this.stepTimeoutMs() / 1000,
							},
							tx,
						);
						await this.sql(`INSERT INTO ${this.table("order_status_history")} (order_id, status) VALUES (:orderId, 'CREATED')`, { orderId }, tx);
						this.publishEvent(
							tx,
							"order.created",
							{
								orderId,
								userId,
								items: check.lines,
								subtotal: check.subtotal,
								discount: check.discount,
								voucherDiscount: check.voucherDiscount,
								total: check.total,
								currency: check.currency,
								paymentMethod: body.payment?.method ?? null,
								customer: body.customer ?? null,
							},
							{ key: orderId, correlationId: orderId },
						);
						return order;
					}, ctx);
					return this.view(row);
				} catch (err) {
					await Promise.allSettled(holds.map(release => release()));
					// A concurrent request with the same key won the race: answer as a replay would.
					if ((err as Error).name === "SequelizeUniqueConstraintError" && idempotencyKey) {
						const previous = await replay();
						if (previous) return previous;
					}
					throw err;
				}
			},
		},

		/** One order; with `userId`, only if it is that user's (404 otherwise). */
		get: {
			params: { orderId: { type: "uuid" }, userId: { type: "string", optional: true } },
			async handler(ctx: Context<{ orderId: string; userId?: string }>) {
				return this.view(await this.findOwned(ctx.params.orderId, ctx.params.userId));
			},
		},

		/** Orders newest first; with `userId` only that user's. */
		list: {
			params: { userId: { type: "string", optional: true }, status: { type: "enum", values: [...ORDER_STATUSES], optional: true }, ...pageParams },
			async handler(ctx: Context<{ userId?: string; status?: OrderStatus; page: number; pageSize: number }>) {
				const { userId, status, page, pageSize } = ctx.params;
				const where = ["true"];
				if (userId) where.push("user_id = :userId");
				if (status) where.push("status = :status");
				const filter = where.join(" AND ");
				const [{ n }] = await this.sql<{ n: string }>(`SELECT count(*) AS n FROM ${this.table("orders")} WHERE ${filter}`, { userId, status });
				const rows = await this.sql<OrderRow>(`SELECT * FROM ${this.table("orders")} WHERE ${filter} ORDER BY created_at DESC, id LIMIT :limit OFFSET :offset`, {
					userId,
					status,
					limit: pageSize,
					offset: offsetOf(page, pageSize),
				});
				return pageOf(await Promise.all(rows.map(r => this.view(r))), Number(n), page, pageSize);
			},
		},

		/** Pays an order waiting in PAYMENT_PENDING, synchronously: `{success, order}` or 422 with the failure. */
		processPayment: {
			params: { orderId: { type: "uuid" }, userId: { type: "string", optional: true }, method: { type: "enum", values: ["WALLET", "CARD"] }, cardToken: { type: "string", min: 1, max: 200, optional: true } },
			...GATEWAY_CALL,
			async handler(ctx: Context<{ orderId: string; userId?: string; method: PaymentMethod; cardToken?: string }>) {
				const { orderId, method, cardToken } = ctx.params;
				if (method === "CARD" && !cardToken) throw new BusinessRuleError("CARD_TOKEN_REQUIRED", "A card payment needs a cardToken");
				const owned = await this.findOwned(orderId, ctx.params.userId);
				await this.transaction(async tx => {
					const order = (await this.lockOrder(orderId, tx))!;
					if (order.status !== "PAYMENT_PENDING" || order.payment_status !== "NOT_STARTED") {
						throw new ConflictError("ORDER_NOT_PAYABLE", `The order is ${order.status}${order.payment_status !== "NOT_STARTED" ? " with a payment under way" : ""}; only an unpaid PAYMENT_PENDING order can be paid`, { status: order.status });
					}
					await this.sql(`UPDATE ${this.table("orders")} SET payment_method = :method, card_token = :cardToken, payment_status = 'PENDING', updated_at = now() WHERE id = :orderId`, {
						orderId,
						method,
						cardToken: cardToken ?? null,
					}, tx);
				});
				const result = await ctx.call<AuthorizeResult, Record<string, unknown>>("payment.authorize", {
					orderId,
					userId: owned.user_id,
					amount: Number(owned.total),
					currency: owned.currency,
					method,
					cardToken,
				});
				const order = await this.view(await this.applyPayment(orderId, result, ctx));
				if (!result.ok) throw new BusinessRuleError(result.code, result.reason, { order });
				return { success: true, order };
			},
		},

		/** Cancels before dispatch (owner or admin): stock back, payment refunded, vouchers restored. */
		cancel: {
			params: { orderId: { type: "uuid" }, userId: { type: "string", optional: true }, reason: { type: "string", max: 500, optional: true } },
			async handler(ctx: Context<{ orderId: string; userId?: string; reason?: string }>) {
				await this.findOwned(ctx.params.orderId, ctx.params.userId);
				const reason = ctx.params.reason ?? (ctx.params.userId ? "CANCELLED_BY_CUSTOMER" : "CANCELLED_BY_ADMIN");
				const row = await this.transaction(async tx => {
					const order = (await this.lockOrder(ctx.params.orderId, tx))!;
					if (order.status === "DISPATCHED" || order.status === "COMPLETED") throw new ConflictError("ORDER_ALREADY_DISPATCHED", "A dispatched order cannot be cancelled");
					const paid = order.payment_status === "AUTHORIZED";
					const updated = await this.transition(tx, order, "CANCELLED", { reason, set: paid ? { payment_status: "REFUND_PENDING" } : {} });
					if (paid) tx.afterCommit(() => void this.requestRefund(order.id, "CANCELLED"));
					return updated;
				}, ctx);
				return this.view(row);
			},
		},

		dispatch: {
			params: { orderId: { type: "uuid" }, courier: { type: "string", min: 1, max: 100, trim: true }, trackingNumber: { type: "string", min: 1, max: 100, trim: true } },
			async handler(ctx: Context<{ orderId: string; courier: string; trackingNumber: string }>) {
				const { orderId, courier, trackingNumber } = ctx.params;
				await this.findOwned(orderId);
				const row = await this.transaction(async tx => {
					const order = (await this.lockOrder(orderId, tx))!;
					return this.transition(tx, order, "DISPATCHED", { set: { courier, tracking_number: trackingNumber } });
				}, ctx);
				return this.view(row);
			},
		},

		deliver: {
			params: { orderId: { type: "uuid" } },
			async handler(ctx: Context<{ orderId: string }>) {
				await this.findOwned(ctx.params.orderId);
				const row = await this.transaction(async tx => this.transition(tx, (await this.lockOrder(ctx.params.orderId, tx))!, "COMPLETED"), ctx);
				return this.view(row);
			},
		},

		/** The figures of SPEC section 4 (GET /analytics/orders). */
		analytics: {
			async handler() {
				const today = new Date().toISOString().slice(0, 10);
				const byStatusRows = await this.sql<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM ${this.table("orders")} GROUP BY status`);
				const byStatus = Object.fromEntries(ORDER_STATUSES.map(s => [s, 0])) as Record<string, number>;
				for (const r of byStatusRows) byStatus[r.status] = Number(r.n);
				const [money] = await this.sql<{ revenue: string; today: string; n: string }>(
					`SELECT COALESCE(SUM(total), 0) AS revenue, COALESCE(SUM(total) FILTER (WHERE created_at >= :today::date AND created_at < :today::date + 1), 0) AS today, count(*) AS n
					 FROM ${this.table("orders")} WHERE status = ANY(ARRAY[:successful]::text[])`,
					{ successful: SUCCESSFUL, today },
				);
				const top = await this.sql<{ product_id: string; name: string; quantity: string; revenue: string }>(
					`SELECT l->>'productId' AS product_id, max(l->>'name') AS name, SUM((l->>'quantity')::int) AS quantity, SUM((l->>'lineTotal')::bigint) AS revenue
					 FROM ${this.table("orders")} o, jsonb_array_elements(o.items) l WHERE o.status = ANY(ARRAY[:successful]::text[])
					 GROUP BY 1 ORDER BY 3 DESC, 4 DESC, 1 LIMIT 10`,
					{ successful: SUCCESSFUL },
				);
				const successfulOrders = Number(money.n);
				const totalRevenue = Number(money.revenue);
				return {
					totalOrders: Object.values(byStatus).reduce((a, b) => a + b, 0),
					byStatus,
					successfulOrders,
					failedPayments: byStatus.PAYMENT_FAILED,
					pendingOrders: byStatus.CREATED + byStatus.PAYMENT_PENDING + byStatus.PAYMENT_SUCCESS,
					totalRevenue,
					revenueToday: Number(money.today),
					averageOrderValue: successfulOrders ? divRoundHalfUp(totalRevenue, successfulOrders) : 0,
					currency: runtimeOf(this.broker).config.storeCurrency,
					topProducts: top.map(t => ({ productId: t.product_id, name: t.name, quantity: Number(t.quantity), revenue: Number(t.revenue) })),
				};
			},
		},

		/** Operators: the ids that start with `prefix` (the 8-character short id notifications show), at most 5. */
		idsStartingWith: {
			params: { prefix: { type: "string", pattern: /^[0-9a-f-]{4,36}$/i } },
			async handler(ctx: Context<{ prefix: string }>) {
				const rows = await this.sql<{ id: string }>(`SELECT id FROM ${this.table("orders")} WHERE id::text LIKE :prefix ORDER BY created_at DESC LIMIT 5`, { prefix: `${ctx.params.prefix.toLowerCase()}%` });
				return rows.map(r => r.id);
			},
		},

		/** Operators: orders past their step's deadline, or idle longer than `olderThanSeconds` before dispatch. */
		stuck: {
			params: { olderThanSeconds: { type: "number", integer: true, min: 0, optional: true, convert: true } },
			async handler(ctx: Context<{ olderThanSeconds?: number }>) {
				const rows = await this.sql<OrderRow & { step_deadline: Date | null }>(
					`SELECT * FROM ${this.table("orders")}
					 WHERE step_deadline <= now() OR (:older::int IS NOT NULL AND status IN ('CREATED', 'PAYMENT_PENDING', 'PAYMENT_SUCCESS') AND updated_at <= now() - make_interval(secs => :older::int))
					 ORDER BY updated_at LIMIT 100`,
					{ older: ctx.params.olderThanSeconds ?? null },
				);
				return rows.map(o => ({
					id: o.id,
					userId: o.user_id,
					status: o.status,
					paymentStatus: o.payment_status,
					stepDeadline: o.step_deadline ? new Date(o.step_deadline).toISOString() : null,
					redrives: o.redrives,
					updatedAt: new Date(o.updated_at).toISOString(),
				}));
			},
		},

		/** Runs the watchdog now (it also runs on a timer). */
		watchdog: {
			handler() {
				return this.watchdog();
			},
		},
	},

	methods: {
		stepTimeoutMs() {
			return runtimeOf(this.broker).config.sagaStepTimeoutMs;
		},

		async lockOrder(orderId: string, tx: Transaction) {
			const [order] = await this.sql<OrderRow>(`SELECT * FROM ${this.table("orders")} WHERE id = :orderId FOR UPDATE`, { orderId }, tx);
			return order;
		},

		async view(order: OrderRow) {
			const history = await this.sql<{ status: string; at: Date; reason: string | null }>(
				`SELECT status, at, reason FROM ${this.table("order_status_history")} WHERE order_id = :id ORDER BY id`,
				{ id: order.id },
			);
			return toOrder(order, history);
		},

		async findOwned(orderId: string, userId?: string) {
			const [order] = await this.sql<OrderRow>(`SELECT * FROM ${this.table("orders")} WHERE id = :orderId`, { orderId });
			// Another customer's order is "not found": its existence is not theirs to learn.
			if (!order || (userId !== undefined && order.user_id !== userId)) throw new NotFoundError("Order", { orderId });
			return order;
		},

		/**
		 * Moves an order to `to` if the state machine allows it (409 ILLEGAL_TRANSITION otherwise),
		 * appends the history, sets the next step's deadline and publishes the status's event.
		 */
		async transition(tx: Transaction, order: OrderRow, to: OrderStatus, change: Change = {}, cause?: DomainEvent) {
			if (!canTransition(order.status, to)) {
				throw new ConflictError("ILLEGAL_TRANSITION", `An order cannot go from ${order.status} to ${to}`, { from: order.status, to });
			}
			const set = { ...change.set };
			const assignments = Object.keys(set).map(k => `${k} = :set_${k}`);
			const replacements: Record<string, unknown> = { id: order.id, to, s: this.stepTimeoutMs() / 1000 };
			for (const [k, v] of Object.entries(set)) replacements[`set_${k}`] = v;
			// A deadline while the saga still has a step to take (or a refund to see through).
			const deadline = isPreDispatch(to) || set.payment_status === "REFUND_PENDING" ? "now() + make_interval(secs => :s)" : "NULL";
			const [updated] = await this.sql<OrderRow>(
				`UPDATE ${this.table("orders")} SET status = :to, ${assignments.map(a => a + ", ").join("")}step_deadline = ${deadline}, redrives = 0, updated_at = now() WHERE id = :id RETURNING *`,
				replacements,
				tx,
			);
			await this.sql(`INSERT INTO ${this.table("order_status_history")} (order_id, status, reason) VALUES (:id, :to, :reason)`, { id: order.id, to, reason: change.reason ?? null }, tx);
			const eventName = STATUS_EVENT[to];
			if (eventName) {
				const data: Record<string, unknown> = { orderId: order.id, userId: order.user_id, total: Number(order.total), currency: order.currency };
				if (eventName === "order.failed") Object.assign(data, { code: updated.failure_code ?? change.reason ?? to, reason: updated.failure_reason ?? change.reason ?? to });
				if (to === "DISPATCHED") Object.assign(data, { courier: updated.courier, trackingNumber: updated.tracking_number });
				if (to === "CANCELLED") data.reason = change.reason ?? "CANCELLED";
				this.publishEvent(tx, eventName, data, { key: order.id, correlationId: order.id, causedBy: cause });
			}
			const stepSeconds = (Date.now() - new Date(order.updated_at).getTime()) / 1000;
			// For live tracking (SSE): not a domain event, a hint to whoever follows the order.
			tx.afterCommit(() => {
				observeMetric(this.broker, "sagaStep", { status: to }, stepSeconds);
				if (FINAL_STEPS.has(to)) countMetric(this.broker, "orders", { status: to });
				void this.broker.broadcast("order.status-changed", { orderId: order.id, userId: order.user_id, status: to });
			});
			return updated;
		},

		async react(orderId: string, cause: DomainEvent | undefined, tx: Transaction, fn: (order: OrderRow) => Promise<unknown>) {
			const order = await this.lockOrder(orderId, tx);
			if (!order) {
				this.logger.warn(`${cause?.eventName ?? "A reaction"} names unknown order ${orderId}; ignored.`);
				return;
			}
			await fn(order);
		},

		/**
		 * Asks the payment to refund the order (idempotent). Its answer is the payment's own word: a
		 * refund that already ended settles the order here, so a REFUND_PENDING order never depends
		 * on its payment.refunded event alone (one dead-lettered would leave it pending for ever).
		 */
		async requestRefund(orderId: string, reason: string) {
			try {
				const { status } = await this.broker.call<{ status: string }, Record<string, unknown>>("payment.refund", { orderId, reason });
				if (status === "REFUNDED" || status === "REFUND_FAILED") {
					await this.recordRefundEnd(orderId, status, { pendingOnly: true });
				}
			} catch (err) {
				this.logger.warn(`Refund request for order ${orderId} failed (${(err as Error).message}); the watchdog will ask again.`);
			}
		},

		/** How the order's refund ended; `pendingOnly` leaves an order whose refund was not awaited alone. */
		async recordRefundEnd(orderId: string, status: "REFUNDED" | "REFUND_FAILED", opts: { tx?: Transaction; pendingOnly?: boolean }) {
			await this.sql(
				`UPDATE ${this.table("orders")} SET payment_status = :status, step_deadline = NULL, updated_at = now() WHERE id = :orderId${opts.pendingOnly ? " AND payment_status = 'REFUND_PENDING'" : ""}`,
				{ orderId, status },
				opts.tx,
			);
		},

		/** Authorizes the order's chosen payment (idempotent) and applies the result; the watchdog retries on error. */
		async startPayment(orderId: string, ctx?: Context) {
			const [order] = await this.sql<OrderRow>(`SELECT * FROM ${this.table("orders")} WHERE id = :orderId`, { orderId });
			if (!order || order.status !== "PAYMENT_PENDING" || !order.payment_method) return undefined;
			try {
				const caller = ctx ?? this.broker;
				const result = await caller.call<AuthorizeResult, Record<string, unknown>>("payment.authorize", {
					orderId,
					userId: order.user_id,
					amount: Number(order.total),
					currency: order.currency,
					method: order.payment_method,
					cardToken: order.card_token ?? undefined,
				});
				await this.applyPayment(orderId, result, ctx);
				return result;
			} catch (err) {
				this.logger.warn(`Payment of order ${orderId} did not complete (${(err as Error).message}); the watchdog will retry.`);
				return undefined;
			}
		},

		/** The payment's outcome on the order, once (the payment's own event later finds it applied). */
		async applyPayment(orderId: string, result: AuthorizeResult, ctx?: Context) {
			return this.transaction(async tx => {
				const order = (await this.lockOrder(orderId, tx))!;
				if (order.status !== "PAYMENT_PENDING") {
					if (result.ok) await this.refundLatePayment(tx, order, result.paymentId);
					return (await this.lockOrder(orderId, tx))!;
				}
				if (result.ok) return this.transition(tx, order, "PAYMENT_SUCCESS", { set: { payment_status: "AUTHORIZED", payment_id: result.paymentId, card_token: null } });
				return this.transition(tx, order, "PAYMENT_FAILED", {
					reason: result.code,
					set: { payment_status: "FAILED", payment_id: result.paymentId, payment_failure_reason: result.reason, failure_code: result.code, failure_reason: result.reason, card_token: null },
				});
			}, ctx);
		},

		/** Paid after the order ended (expired, cancelled, failed): the money goes back, once. */
		async refundLatePayment(tx: Transaction, order: OrderRow, paymentId: string) {
			if (isPreDispatch(order.status) || order.payment_status === "AUTHORIZED" || order.payment_status.startsWith("REFUND")) return;
			await this.sql(
				`UPDATE ${this.table("orders")} SET payment_status = 'REFUND_PENDING', payment_id = :paymentId, step_deadline = now() + make_interval(secs => :s), updated_at = now() WHERE id = :id`,
				{ id: order.id, paymentId, s: this.stepTimeoutMs() / 1000 },
				tx,
			);
			tx.afterCommit(() => void this.requestRefund(order.id, "ORDER_NOT_PAYABLE"));
		},

		async onReserved(tx: Transaction, order: OrderRow, expiresAt: string, cause?: DomainEvent) {
			if (order.status !== "CREATED") return;
			const updated = await this.transition(tx, order, "PAYMENT_PENDING", {}, cause);
			if (updated.payment_method) {
				const ctx = contextOf(tx);
				tx.afterCommit(() => {
					void this.startPayment(order.id, ctx);
				});
			} else {
				// Unpaid orders wait for process-payment until the reservation expires.
				await this.sql(`UPDATE ${this.table("orders")} SET step_deadline = :expiresAt::timestamptz + make_interval(secs => :s) WHERE id = :id`, {
					id: order.id,
					expiresAt,
					s: this.stepTimeoutMs() / 1000,
				}, tx);
			}
		},

		async onReservationFailed(tx: Transaction, order: OrderRow, lines: unknown, cause?: DomainEvent) {
			if (order.status !== "CREATED") return;
			await this.transition(tx, order, "FAILED", { reason: "OUT_OF_STOCK", set: { failure_code: "OUT_OF_STOCK", failure_reason: "Some lines are out of stock", failure_details: JSON.stringify({ lines }) } }, cause);
		},

		async onCommitted(tx: Transaction, order: OrderRow, cause?: DomainEvent) {
			if (order.status !== "PAYMENT_SUCCESS") return;
			await this.transition(tx, order, "CONFIRMED", {}, cause);
		},

		/** The reservation expired: unpaid → CANCELLED; paid → FAILED and the payment refunded. */
		async onReservationGone(tx: Transaction, order: OrderRow, cause?: DomainEvent) {
			if (order.status === "PAYMENT_PENDING" && order.payment_status !== "AUTHORIZED") {
				await this.transition(tx, order, "CANCELLED", { reason: "RESERVATION_EXPIRED" }, cause);
			} else if (order.status === "PAYMENT_SUCCESS" || (order.status === "PAYMENT_PENDING" && order.payment_status === "AUTHORIZED")) {
				await this.transition(tx, order, "FAILED", { reason: "RESERVATION_EXPIRED", set: { payment_status: "REFUND_PENDING", failure_code: "RESERVATION_EXPIRED", failure_reason: "The reservation expired before the payment was taken" } }, cause);
				tx.afterCommit(() => void this.requestRefund(order.id, "RESERVATION_EXPIRED"));
			}
		},

		/** One overdue order: its step taken again through idempotent actions, or compensated after MAX_REDRIVES. */
		async redrive(orderId: string) {
			const [order] = await this.sql<OrderRow>(
				`UPDATE ${this.table("orders")} SET redrives = redrives + 1, step_deadline = now() + make_interval(secs => :s)
				 WHERE id = :orderId AND step_deadline <= now() RETURNING *`,
				{ orderId, s: this.stepTimeoutMs() / 1000 },
			);
			if (!order) return; // another node took it
			this.logger.warn(`Watchdog: order ${orderId} overdue in ${order.status}/${order.payment_status} (try ${order.redrives}).`);
			if (order.payment_status === "REFUND_PENDING") {
				await this.requestRefund(orderId, "WATCHDOG");
				return;
			}
			if (order.redrives > MAX_REDRIVES) {
				await this.transaction(async tx => {
					const locked = (await this.lockOrder(orderId, tx))!;
					if (!isPreDispatch(locked.status)) return;
					const paid = locked.payment_status === "AUTHORIZED";
					await this.transition(tx, locked, "FAILED", { reason: "SAGA_TIMEOUT", set: { failure_code: "SAGA_TIMEOUT", failure_reason: "A step of the checkout did not complete", ...(paid ? { payment_status: "REFUND_PENDING" } : {}) } });
					if (paid) tx.afterCommit(() => void this.requestRefund(orderId, "SAGA_TIMEOUT"));
				});
				return;
			}
			if (order.status === "CREATED") {
				const result = await this.broker.call<ReserveResult, Record<string, unknown>>("inventory.reserve", { orderId, items: order.items.map(l => ({ productId: l.productId, quantity: l.quantity })) });
				await this.transaction(async tx => {
					const locked = (await this.lockOrder(orderId, tx))!;
					if (result.ok) await this.onReserved(tx, locked, result.expiresAt);
					else if (result.reason === "OUT_OF_STOCK") await this.onReservationFailed(tx, locked, result.lines);
					else if (locked.status === "CREATED") await this.transition(tx, locked, "CANCELLED", { reason: "RESERVATION_RELEASED" });
				});
			} else if (order.status === "PAYMENT_PENDING") {
				if (order.payment_method) {
					await this.startPayment(orderId);
					return;
				}
				const reservation = await this.broker.call<{ status: string }, Record<string, unknown>>("inventory.reservation", { orderId }).catch(() => undefined);
				if (reservation && reservation.status !== "RESERVED") {
					await this.transaction(async tx => this.onReservationGone(tx, (await this.lockOrder(orderId, tx))!));
				}
			} else if (order.status === "PAYMENT_SUCCESS") {
				const result = await this.broker.call<CommitResult, Record<string, unknown>>("inventory.commit", { orderId });
				await this.transaction(async tx => {
					const locked = (await this.lockOrder(orderId, tx))!;
					if (result.ok) await this.onCommitted(tx, locked);
					else await this.onReservationGone(tx, locked);
				});
			}
		},

		/** True while a saga consumer group has a Kafka backlog that moves (the bus has no queue to read). */
		async sagaQueueMoving() {
			const runtime = runtimeOf(this.broker);
			if (!runtime.kafka()) return false;
			let moving = false;
			for (const [group, events] of Object.entries(SAGA_CONSUMERS)) {
				const lag = await runtime.consumerLag(group, events).catch(err => this.logger.warn(`Watchdog cannot read the lag of ${group}: ${(err as Error).message}`));
				if (!lag) continue;
				const verdict = queueVerdict(this.queueProgress[group], lag, Date.now(), this.stepTimeoutMs());
				this.queueProgress[group] = verdict.progress;
				if (verdict.moving) this.logger.info(`Watchdog: ${group} works off a backlog of ${lag.lag} events; its overdue steps wait their turn.`);
				moving ||= verdict.moving;
			}
			return moving;
		},

		async watchdog() {
			const dueSql = (skipQueued: boolean) =>
				this.sql<{ id: string; status: OrderStatus }>(
					`SELECT id, status FROM ${this.table("orders")} WHERE step_deadline <= now() ${skipQueued ? "AND status <> ALL(ARRAY[:queued]::text[])" : ""} ORDER BY step_deadline LIMIT 50`,
					{ queued: [...QUEUED_STEPS] },
				);
			let due = await dueSql(false);
			// Past its deadline only because its event waits behind a backlog that is being worked
			// off: the consumer will reach it, and a re-drive would only add load to a busy saga.
			if (due.some(o => QUEUED_STEPS.has(o.status)) && (await this.sagaQueueMoving())) due = await dueSql(true);
			for (const { id } of due) {
				await this.redrive(id).catch(err => this.logger.warn(`Watchdog could not re-drive order ${id}: ${(err as Error).message}`));
			}
		},
	},

	created() {
		this.queueProgress = {};
	},

	async started() {
		this.watchdogRun = runEvery(Math.max(200, Math.min(5000, Math.floor(this.stepTimeoutMs() / 4))), () => this.watchdog(), this.logger, "Watchdog");
	},

	async stopped() {
		await this.watchdogRun?.stop();
	},
};

export default OrderService;
