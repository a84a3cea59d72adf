import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { createHash } from "node:crypto";
import { DbMixin } from "../mixins/db.mixin";
import type { EventsService } from "../mixins/events.mixin";
import { runtimeOf } from "../lib/runtime";
import { isUniqueViolation, WITH_ROW_VERSION } from "../lib/sql";
import { BusinessRuleError, ConflictError, HostedPaymentsDisabledError, NotFoundError } from "../lib/errors";
import { pageParams } from "../lib/paging";
import { GATEWAY_CALL } from "../lib/timeouts";
import { divRoundHalfUp } from "../lib/domain/money";
import { ORDER_STATUSES, type OrderStatus } from "../lib/domain/order-status";
import type { EventPayloads } from "../lib/events/catalogue";
import { orderView, type HistoryEntry } from "../lib/api/order-view";
import { cancel, hostedPaymentRefusal, sessionOpened } from "../lib/domain/saga";
import { redirectProblem } from "../lib/domain/redirect";
import { GroupCommit } from "../lib/batch";
import { traceOf, type TraceRef } from "../lib/events/envelope";
import type { CartValidation } from "./validation.service";
import { CART_ITEMS_RULE } from "../lib/domain/cart";
import type { AuthorizeResult, PaymentMethod, PaymentSession } from "./payment.service";
import { OrderSagaMixin, paymentDecision, stateOf, type OrderRow, type OrderSagaMethods } from "./order.saga";
import { Errors } from "moleculer";
import { newId } from "../lib/ids";

/** An order for the intake's next group commit. */
interface NewOrder {
	columns: Pick<OrderRow, "id" | "user_id" | "payment_status" | "items" | "currency" | "promo_codes" | "voucher_codes" | "shipping_address" | "customer" | "payment_method" | "card_token" | "idempotency_key" | "request_hash"> & {
		subtotal: number;
		discount: number;
		voucher_discount: number;
		total: number;
	};
	event: EventPayloads["order.created"];
	trace: TraceRef;
}

const SUCCESSFUL = ["CONFIRMED", "DISPATCHED", "COMPLETED"];


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

type OrderThis = EventsService &
	OrderSagaMethods & {
		/** New orders, written in groups (writeOrders). */
		intake: GroupCommit<NewOrder, OrderRow>;
		writeOrders(orders: NewOrder[]): Promise<OrderRow[]>;
		/** The columns of an order (alias `o`) with its status history: one statement, one snapshot, so the two always agree. */
		historyColumns(): string;
		findOwned(orderId: string, userId?: string): Promise<OrderWithHistory>;
	};


/** An order row read with its status history in the same statement (historyColumns). */
type OrderWithHistory = OrderRow & { status_history: HistoryEntry[] };

const view = (o: OrderWithHistory) => orderView(o, o.status_history);


/**
 * Orders (SPEC section 5): the actions and the intake. Creation validates synchronously, holds
 * promo and vouchers, and writes the order with `order.created` in a group commit; every later step
 * is a reaction to an event or a watchdog's re-drive, in order.saga.ts, which this service mixes in.
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
				{
					// The hosted payment session an order waits on (payment_method HOSTED_CARD).
					id: "order-002-payment-session",
					sql: `ALTER TABLE orders ADD COLUMN payment_session_id text;`,
				},
			],
		}),
		OrderSagaMixin,
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
					const [existing] = await this.sql<OrderWithHistory>(`SELECT ${this.historyColumns()} FROM ${this.table("orders")} o WHERE o.user_id = :userId AND o.idempotency_key = :idempotencyKey`, { userId, idempotencyKey });
					if (!existing) return undefined;
					if (existing.request_hash !== requestHash) throw new ConflictError("IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was used with another request body");
					return { ...view(existing), replayed: true };
				};
				if (idempotencyKey) {
					const previous = await replay();
					if (previous) return previous;
				}

				const check = await ctx.call<CartValidation, Record<string, unknown>>("validation.validate", { items: body.items, promoCodes: body.promoCodes, voucherCodes: body.voucherCodes, userId });
				if (!check.valid) throw new BusinessRuleError("CART_INVALID", "The cart is not valid", { errors: check.errors });

				const orderId = newId();
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
					const row = await this.intake.submit({
						columns: {
							id: orderId,
							user_id: userId,
							payment_status: body.payment ? "PENDING" : "NOT_STARTED",
							items: check.lines,
							subtotal: check.subtotal,
							discount: check.discount,
							voucher_discount: check.voucherDiscount,
							total: check.total,
							currency: check.currency,
							promo_codes: body.promoCodes.map(c => c.trim().toUpperCase()),
							voucher_codes: body.voucherCodes,
							shipping_address: body.shippingAddress,
							customer: body.customer ?? null,
							payment_method: body.payment?.method ?? null,
							card_token: body.payment?.cardToken ?? null,
							idempotency_key: idempotencyKey ?? null,
							request_hash: requestHash,
						},
						event: {
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
						trace: traceOf(ctx),
					});
					// Its history is the one entry written with it: no need to read it back.
					return orderView(row, [{ status: "CREATED", at: row.created_at, reason: null }]);
				} catch (err) {
					await Promise.allSettled(holds.map(release => release()));
					// A concurrent request with the same key won the race: answer as a replay would.
					if (isUniqueViolation(err) && idempotencyKey) {
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
				return view(await this.findOwned(ctx.params.orderId, ctx.params.userId));
			},
		},

		/** Orders newest first; with `userId` only that user's. */
		list: {
			params: { userId: { type: "string", optional: true }, status: { type: "enum", values: [...ORDER_STATUSES], optional: true }, ...pageParams },
			async handler(ctx: Context<{ userId?: string; status?: OrderStatus; page: number; pageSize: number }>) {
				const { userId, status } = ctx.params;
				const where = ["true"];
				if (userId) where.push("user_id = :userId");
				if (status) where.push("status = :status");
				return this.paged({ table: `${this.table("orders")} o`, columns: this.historyColumns(), where: where.join(" AND "), orderBy: "created_at DESC, id" }, { userId, status }, ctx.params, view);
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
					const order = (await this.lockOrders([orderId], tx)).get(orderId)!;
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
				await this.takeStep(orderId, paymentDecision(result), ctx);
				const order = view(await this.findOwned(orderId));
				if (!result.ok) throw new BusinessRuleError(result.code, result.reason, { order });
				return { success: true, order };
			},
		},

		/**
		 * A hosted payment session for an order waiting for payment: the customer pays on the
		 * gateway's page and comes back to `successUrl` (`{SESSION_ID}` filled in) or `cancelUrl`,
		 * both on an allowed origin. Asked again while a session is open, that session is answered.
		 */
		createPaymentSession: {
			params: { orderId: { type: "uuid" }, userId: { type: "string", optional: true }, successUrl: { type: "string", min: 1, max: 2000 }, cancelUrl: { type: "string", min: 1, max: 2000 } },
			...GATEWAY_CALL,
			async handler(ctx: Context<{ orderId: string; userId?: string; successUrl: string; cancelUrl: string }>): Promise<PaymentSession> {
				const { orderId, successUrl, cancelUrl } = ctx.params;
				const { paymentRedirectOrigins, paymentWebhookSecret } = runtimeOf(this.broker).config;
				const fields = (["successUrl", "cancelUrl"] as const).flatMap(field => {
					const problem = redirectProblem(ctx.params[field], paymentRedirectOrigins);
					return problem ? [{ field, message: `${field} ${problem}`, type: "redirectNotAllowed" }] : [];
				});
				if (fields.length > 0) throw new Errors.ValidationError("The request is not valid", "VALIDATION_ERROR", fields);
				if (!paymentWebhookSecret) throw new HostedPaymentsDisabledError();
				const order = await this.findOwned(orderId, ctx.params.userId);
				const notPayable = (message: string) => new ConflictError("ORDER_NOT_PAYABLE", message, { status: order.status });
				const refusal = hostedPaymentRefusal(stateOf(order));
				if (refusal) throw notPayable(refusal);
				const reservation = await ctx.call<{ status: string; expiresAt: string }, Record<string, unknown>>("inventory.reservation", { orderId });
				if (reservation.status !== "RESERVED") throw notPayable("The order's stock reservation has ended");
				const session = await ctx.call<PaymentSession, Record<string, unknown>>("payment.openSession", {
					orderId,
					userId: order.user_id,
					amount: Number(order.total),
					currency: order.currency,
					successUrl,
					cancelUrl,
					notAfter: reservation.expiresAt,
				});
				try {
					await this.takeStep(orderId, state => {
						const moved = hostedPaymentRefusal(state);
						if (moved) throw notPayable(moved);
						return sessionOpened(session.id);
					}, ctx);
				} catch (err) {
					// The order moved on while the session was made: nobody may pay that session now (if
					// someone just did, the void's answer refunds it on an order that ended).
					await this.voidSession(orderId, ctx);
					throw err;
				}
				return session;
			},
		},

		/** Cancels before dispatch (owner or admin): stock back, payment refunded, vouchers restored. */
		cancel: {
			params: { orderId: { type: "uuid" }, userId: { type: "string", optional: true }, reason: { type: "string", max: 500, optional: true } },
			async handler(ctx: Context<{ orderId: string; userId?: string; reason?: string }>) {
				await this.findOwned(ctx.params.orderId, ctx.params.userId);
				const reason = ctx.params.reason ?? (ctx.params.userId ? "CANCELLED_BY_CUSTOMER" : "CANCELLED_BY_ADMIN");
				await this.takeStep(
					ctx.params.orderId,
					order => {
						if (order.status === "DISPATCHED" || order.status === "COMPLETED") throw new ConflictError("ORDER_ALREADY_DISPATCHED", "A dispatched order cannot be cancelled");
						return cancel(order, reason);
					},
					ctx,
				);
				return view(await this.findOwned(ctx.params.orderId));
			},
		},

		dispatch: {
			params: { orderId: { type: "uuid" }, courier: { type: "string", min: 1, max: 100, trim: true }, trackingNumber: { type: "string", min: 1, max: 100, trim: true } },
			async handler(ctx: Context<{ orderId: string; courier: string; trackingNumber: string }>) {
				const { orderId, courier, trackingNumber } = ctx.params;
				await this.findOwned(orderId);
				await this.takeStep(orderId, () => ({ to: "DISPATCHED", set: { courier, tracking_number: trackingNumber } }), ctx);
				return view(await this.findOwned(orderId));
			},
		},

		deliver: {
			params: { orderId: { type: "uuid" } },
			async handler(ctx: Context<{ orderId: string }>) {
				await this.findOwned(ctx.params.orderId);
				await this.takeStep(ctx.params.orderId, () => ({ to: "COMPLETED" }), ctx);
				return view(await this.findOwned(ctx.params.orderId));
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

		/**
		 * Operators: the ids that end with `suffix` (the short id notifications show, lib/ids.ts), at
		 * most 5, newest first. It reads the whole table: a REPL command's lookup, not a request's.
		 */
		idsEndingWith: {
			params: { suffix: { type: "string", pattern: /^[0-9a-f-]{4,36}$/i } },
			async handler(ctx: Context<{ suffix: string }>) {
				const rows = await this.sql<{ id: string }>(`SELECT id FROM ${this.table("orders")} WHERE id::text LIKE :pattern ORDER BY created_at DESC LIMIT 5`, { pattern: `%${ctx.params.suffix.toLowerCase()}` });
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
		/**
		 * A group of new orders in one transaction (the intake's group commit) and one message: their
		 * `order.created` events, then one statement for the orders and their history, sent with the COMMIT.
		 */
		writeOrders(orders: NewOrder[]) {
			return this.transaction(async tx => {
				for (const o of orders) this.publishEvent(tx, "order.created", o.event, { key: o.columns.id, correlationId: o.columns.id, trace: o.trace });
				const rows = await this.sqlAndCommit<OrderRow>(
					`WITH created AS (
					   INSERT INTO ${this.table("orders")} (id, user_id, status, payment_status, items, subtotal, discount, voucher_discount, total, currency, promo_codes, voucher_codes,
					     shipping_address, customer, payment_method, card_token, idempotency_key, request_hash, step_deadline)
					   SELECT id, user_id, 'CREATED', payment_status, items, subtotal, discount, voucher_discount, total, currency, promo_codes, voucher_codes,
					     shipping_address, customer, payment_method, card_token, idempotency_key, request_hash, now() + make_interval(secs => :s)
					   FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS o(id uuid, user_id text, payment_status text, items jsonb, subtotal bigint, discount bigint, voucher_discount bigint,
					     total bigint, currency char(3), promo_codes jsonb, voucher_codes jsonb, shipping_address jsonb, customer jsonb, payment_method text, card_token text,
					     idempotency_key text, request_hash text)
					   RETURNING *, ${WITH_ROW_VERSION}),
					 history AS (INSERT INTO ${this.table("order_status_history")} (order_id, status, at) SELECT id, 'CREATED', created_at FROM created)
					 SELECT * FROM created`,
					{ rows: JSON.stringify(orders.map(o => o.columns)), s: this.stepTimeoutMs() / 1000 },
					tx,
				);
				this.knownOrders.remember(rows, tx);
				const byId = new Map(rows.map(r => [r.id, r]));
				return orders.map(o => byId.get(o.columns.id)!);
			});
		},

		historyColumns() {
			const entry = "json_build_object('status', h.status, 'at', h.at, 'reason', h.reason)";
			return `o.*, COALESCE((SELECT json_agg(${entry} ORDER BY h.id) FROM ${this.table("order_status_history")} h WHERE h.order_id = o.id), '[]') AS status_history`;
		},

		async findOwned(orderId: string, userId?: string) {
			const [order] = await this.sql<OrderWithHistory>(`SELECT ${this.historyColumns()} FROM ${this.table("orders")} o WHERE o.id = :orderId`, { orderId });
			// Another customer's order is "not found": its existence is not theirs to learn.
			if (!order || (userId !== undefined && order.user_id !== userId)) throw new NotFoundError("Order", { orderId });
			return order;
		},

	},

	created() {
		this.intake = new GroupCommit(orders => this.writeOrders(orders), runtimeOf(this.broker).config.eventBatchMax);
	},
};

export default OrderService;
