import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Transaction } from "../lib/transactions";
import { WITH_ROW_VERSION } from "../lib/sql";
import { createHash } from "node:crypto";
import { DbMixin } from "../mixins/db.mixin";
import { EventsMixin, type EventsService } from "../mixins/events.mixin";
import { runtimeOf } from "../lib/runtime";
import { BusinessRuleError, ConflictError, NotFoundError } from "../lib/errors";
import { CardGateway, sessionFromWire, type FailureCode, type GatewaySession, type SessionOutcome } from "../lib/card-gateway";
import { CircuitBreaker } from "../lib/circuit-breaker";
import { startMockGateway, type MockGateway } from "../lib/mock-gateway";
import { claimSql, runSweep } from "../lib/sweep";
import { GATEWAY_CALL } from "../lib/timeouts";
import { runEvery, type Periodic } from "../lib/periodic";
import { countMetric } from "../lib/metrics";
import { traceOf, type TraceRef } from "../lib/events/envelope";
import { GroupCommit } from "../lib/batch";
import { consumeOnce } from "../lib/events/inbox";
import { Errors } from "moleculer";
import { newId } from "../lib/ids";

export type PaymentStatus = "PENDING" | "AUTHORIZED" | "FAILED" | "REFUND_PENDING" | "REFUNDED" | "REFUND_FAILED";
export type PaymentMethod = "WALLET" | "CARD";

interface PaymentRow {
	id: string;
	order_id: string;
	user_id: string;
	method: PaymentMethod;
	amount: string;
	currency: string;
	status: PaymentStatus;
	charge_id: string | null;
	failure_code: FailureCode | null;
	failure_reason: string | null;
	refund_attempts: number;
	refund_reason: string | null;
	card_token: string | null;
	/** Its version, when the write that returned it said (openMany): its settlement need not read it again. */
	row_version_?: string;
}

export type AuthorizeResult =
	| { ok: true; paymentId: string; method: PaymentMethod; amount: number; status: PaymentStatus }
	| { ok: false; paymentId: string; code: FailureCode; reason: string };

const resultOf = (p: PaymentRow): AuthorizeResult =>
	p.status === "FAILED"
		? { ok: false, paymentId: p.id, code: p.failure_code!, reason: p.failure_reason ?? "" }
		: { ok: true, paymentId: p.id, method: p.method, amount: Number(p.amount), status: p.status };

/** Keys the gateway sees: derived from the order, so every retry of one order's charge is one charge. */
const chargeKey = (orderId: string) => `order-${orderId}-charge`;
const refundKey = (orderId: string) => `order-${orderId}-refund`;

/** How an attempt to take the money ended; `ambiguous`: nobody knows (every try timed out), so it is reconciled later. */
type Outcome = { ok: true; chargeId?: string } | { ok: false; code: FailureCode; reason: string; ambiguous?: boolean };
interface Settlement {
	p: PaymentRow;
	outcome: Outcome;
	/** The trace its event continues (the authorize request's). */
	trace?: TraceRef;
}

/** A payment to open for an order (its columns). */
type NewPayment = Pick<PaymentRow, "id" | "order_id" | "user_id" | "method" | "currency" | "card_token"> & { amount: number };

/** A hosted payment session (Stripe Checkout's), as this service records it. */
interface SessionRow {
	id: string;
	order_id: string;
	user_id: string;
	url: string;
	amount: string;
	currency: string;
	status: GatewaySession["status"];
	payment_status: GatewaySession["paymentStatus"];
	charge_id: string | null;
	refund_status: "PENDING" | "REFUNDED" | "FAILED" | null;
	refund_attempts: number;
	success_url: string;
	cancel_url: string;
	expires_at: Date;
	created_at: Date;
}

const toSession = (s: SessionRow) => ({
	id: s.id,
	orderId: s.order_id,
	url: s.url,
	status: s.status,
	paymentStatus: s.payment_status,
	amount: Number(s.amount),
	currency: s.currency,
	successUrl: s.success_url,
	cancelUrl: s.cancel_url,
	expiresAt: new Date(s.expires_at).toISOString(),
	createdAt: new Date(s.created_at).toISOString(),
});
export type PaymentSession = ReturnType<typeof toSession>;

/** The webhook types that carry a session's outcome; any other is acknowledged and ignored. */
const SESSION_WEBHOOKS = new Set(["checkout.session.completed", "checkout.session.expired"]);
/** The gateway's event id as an inbox id (the inbox keys by uuid): a replayed webhook finds its record. */
const inboxId = (gatewayEventId: string) => {
	const h = createHash("sha256").update(`payment-gateway:${gatewayEventId}`).digest("hex");
	return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
};
const gatewayDown = (reason: string) => new Errors.MoleculerRetryableError(`The payment gateway is unavailable (${reason}); try again`, 503, "PROVIDER_UNAVAILABLE");
/** The gateway's answer, or 503 when it cannot be reached (a refusal of a well-formed request is its fault: 502). */
function sessionOrThrow(outcome: SessionOutcome): GatewaySession {
	if (outcome.ok) return outcome.session;
	if (outcome.unavailable) throw gatewayDown(outcome.reason);
	throw new Errors.MoleculerError(`The payment gateway refused the session: ${outcome.reason}`, 502, "PROVIDER_ERROR");
}

type RefundTry = { ok: true; refundId?: string } | { ok: false; reason: string; nothingTaken?: boolean };
type Reconciled = { kind: "nothing" } | { kind: "refunded"; chargeId?: string } | { kind: "unknown"; error: string };

type PaymentThis = EventsService & {
	gateway: CardGateway;
	mock?: MockGateway;
	refundSweep?: Periodic;
	paymentFor(orderId: string, tx?: Transaction): Promise<PaymentRow | undefined>;
	settle(p: PaymentRow, outcome: Outcome, ctx?: Context): Promise<PaymentRow>;
	/** Settlements, written in groups (settleMany). */
	settlements: GroupCommit<Settlement, PaymentRow>;
	settleMany(group: Settlement[]): Promise<PaymentRow[]>;
	/** Payments opened, in groups (openMany). */
	openings: GroupCommit<NewPayment, PaymentRow>;
	openMany(group: NewPayment[]): Promise<PaymentRow[]>;
	reconcilePayments(): Promise<void>;
	reconcileOnce(p: PaymentRow): Promise<Reconciled>;
	abandonStalePayments(): Promise<void>;
	attemptRefunds(paymentId?: string): Promise<void>;
	refundOnce(p: PaymentRow): Promise<RefundTry>;
	cardsWait(): string;
	sessionRow(where: string, params: Record<string, unknown>, tx?: Transaction): Promise<SessionRow | undefined>;
	applySession(session: GatewaySession, tx?: Transaction, ctx?: Context): Promise<SessionRow | undefined>;
	refreshSession(row: SessionRow): Promise<SessionRow>;
	refundSecondCharges(): Promise<void>;
};

/**
 * Payments (SPEC sections 5 and 6): one payment per order, through the wallet (RPC) or the card
 * gateway (HTTP, order-derived idempotency key). Refunds are persistent: a REFUND_PENDING payment is
 * retried with backoff by whichever payment node claims it, until REFUNDED or, after the last try,
 * REFUND_FAILED. Also the card charge of wallet top-ups.
 */
const PaymentService: ServiceSchema<ServiceSettingSchema, Record<string, any>, Record<string, any>, PaymentThis> = {
	name: "payment",
	mixins: [
		DbMixin({
			migrations: [
				{
					id: "payment-001-payments-top-ups",
					sql: `
						CREATE TABLE payments (
							id uuid PRIMARY KEY,
							order_id uuid NOT NULL UNIQUE,
							user_id text NOT NULL,
							method text NOT NULL CHECK (method IN ('WALLET', 'CARD')),
							amount bigint NOT NULL CHECK (amount >= 0),
							currency char(3) NOT NULL,
							status text NOT NULL CHECK (status IN ('PENDING', 'AUTHORIZED', 'FAILED', 'REFUND_PENDING', 'REFUNDED', 'REFUND_FAILED')),
							charge_id text,
							failure_code text,
							failure_reason text,
							refund_reason text,
							refund_attempts integer NOT NULL DEFAULT 0,
							refund_next_at timestamptz,
							refund_error text,
							created_at timestamptz NOT NULL DEFAULT now(),
							updated_at timestamptz NOT NULL DEFAULT now()
						);
						CREATE INDEX payments_refunds_due ON payments (refund_next_at) WHERE status = 'REFUND_PENDING';
						CREATE TABLE top_ups (
							id uuid PRIMARY KEY,
							user_id text NOT NULL,
							idempotency_key text NOT NULL,
							request_hash text NOT NULL,
							amount bigint NOT NULL CHECK (amount > 0),
							status text NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'DECLINED')),
							failure_code text,
							created_at timestamptz NOT NULL DEFAULT now(),
							UNIQUE (user_id, idempotency_key)
						);`,
				},
				{
					// A card charge whose outcome was unknown (timeouts) is asked about again later, and
					// refunded if it turns out taken: a failed order keeps no money.
					id: "payment-002-charge-reconciliation",
					sql: `
						ALTER TABLE payments ADD COLUMN card_token text, ADD COLUMN reconcile boolean NOT NULL DEFAULT false;
						CREATE INDEX payments_reconcile_due ON payments (refund_next_at) WHERE reconcile;`,
				},
				{
					// A payment whose node died mid-attempt is PENDING with nobody to finish it.
					id: "payment-003-pending-by-age",
					sql: `CREATE INDEX payments_pending_since ON payments (created_at) WHERE status = 'PENDING';`,
				},
				{
					// Hosted payment sessions: at most one open per order; the payment row comes when one completes.
					id: "payment-004-hosted-sessions",
					sql: `
						CREATE TABLE payment_sessions (
							id text PRIMARY KEY,
							order_id uuid NOT NULL,
							user_id text NOT NULL,
							url text NOT NULL,
							amount bigint NOT NULL CHECK (amount > 0),
							currency char(3) NOT NULL,
							status text NOT NULL CHECK (status IN ('open', 'complete', 'expired')),
							payment_status text NOT NULL CHECK (payment_status IN ('unpaid', 'paid')),
							charge_id text,
							success_url text NOT NULL,
							cancel_url text NOT NULL,
							expires_at timestamptz NOT NULL,
							created_at timestamptz NOT NULL DEFAULT now(),
							updated_at timestamptz NOT NULL DEFAULT now()
						);
						CREATE INDEX payment_sessions_by_order ON payment_sessions (order_id, created_at DESC);
						CREATE UNIQUE INDEX payment_sessions_one_open ON payment_sessions (order_id) WHERE status = 'open';`,
				},
				{
					// A session that paid an order paid already (a gateway that charged twice): its charge is
					// given back by the refund sweep, with retries, as a row of its own.
					id: "payment-005-session-refunds",
					sql: `
						ALTER TABLE payment_sessions ADD COLUMN refund_status text CHECK (refund_status IN ('PENDING', 'REFUNDED', 'FAILED')),
						  ADD COLUMN refund_attempts integer NOT NULL DEFAULT 0, ADD COLUMN refund_next_at timestamptz, ADD COLUMN refund_error text;
						CREATE INDEX payment_sessions_refunds_due ON payment_sessions (refund_next_at) WHERE refund_status = 'PENDING';`,
				},
			],
		}),
		EventsMixin(),
	],

	actions: {
		/**
		 * Authorizes an order's payment once. Repeated (a retry, the watchdog), it finishes a pending
		 * attempt or answers the settled result; a wallet that cannot be reached leaves it pending.
		 */
		authorize: {
			params: {
				orderId: { type: "uuid" },
				userId: { type: "string", min: 1 },
				amount: { type: "number", integer: true, min: 0 },
				currency: { type: "string", length: 3 },
				method: { type: "enum", values: ["WALLET", "CARD"] },
				cardToken: { type: "string", min: 1, max: 200, optional: true },
			},
			...GATEWAY_CALL,
			async handler(ctx: Context<{ orderId: string; userId: string; amount: number; currency: string; method: PaymentMethod; cardToken?: string }>): Promise<AuthorizeResult> {
				const p = ctx.params;
				if (p.method === "CARD" && !p.cardToken) throw new BusinessRuleError("CARD_TOKEN_REQUIRED", "A card payment needs a cardToken");
				// The order's one payment: this one, or the one an earlier try made (its row either way).
				const payment = await this.openings.submit({ id: newId(), order_id: p.orderId, user_id: p.userId, method: p.method, amount: p.amount, currency: p.currency, card_token: p.cardToken ?? null });
				if (payment.status !== "PENDING") return resultOf(payment);
				const amount = Number(payment.amount);
				if (amount === 0) return resultOf(await this.settle(payment, { ok: true }, ctx)); // vouchers paid it all
				if (payment.method === "WALLET") {
					try {
						await ctx.call("wallet.debit", { userId: payment.user_id, amount, orderId: payment.order_id });
						return resultOf(await this.settle(payment, { ok: true }, ctx));
					} catch (err) {
						if ((err as Errors.MoleculerError).type !== "INSUFFICIENT_FUNDS") throw err; // unknown outcome: stays PENDING
						return resultOf(await this.settle(payment, { ok: false, code: "INSUFFICIENT_FUNDS", reason: "The wallet balance does not cover the total" }, ctx));
					}
				}
				const outcome = await this.gateway.charge({ amount, currency: payment.currency, token: p.cardToken!, idempotencyKey: chargeKey(payment.order_id) });
				return resultOf(await this.settle(payment, outcome, ctx));
			},
		},

		/** Starts the refund of an order's payment (once); the refund itself runs and retries in the background. */
		refund: {
			params: { orderId: { type: "uuid" }, reason: { type: "string", min: 1, max: 200 } },
			async handler(ctx: Context<{ orderId: string; reason: string }>) {
				const [p] = await this.sql<PaymentRow>(
					`UPDATE ${this.table("payments")} SET status = 'REFUND_PENDING', refund_reason = :reason, refund_next_at = now(), updated_at = now()
					 WHERE order_id = :orderId AND status = 'AUTHORIZED' RETURNING *`,
					ctx.params,
				);
				const payment = p ?? (await this.paymentFor(ctx.params.orderId));
				if (!payment) return { status: "NONE" };
				if (p) void this.attemptRefunds(p.id);
				return { status: payment.status, paymentId: payment.id };
			},
		},

		/** An order's payment (404 if none). */
		get: {
			params: { orderId: { type: "uuid" } },
			async handler(ctx: Context<{ orderId: string }>) {
				const p = await this.paymentFor(ctx.params.orderId);
				if (!p) throw new NotFoundError("Payment", ctx.params);
				return {
					id: p.id,
					orderId: p.order_id,
					method: p.method,
					amount: Number(p.amount),
					currency: p.currency,
					status: p.status,
					failureCode: p.failure_code ?? undefined,
					failureReason: p.failure_reason ?? undefined,
					refundAttempts: p.refund_attempts,
				};
			},
		},

		/**
		 * A hosted payment session for an order (POST /orders/:id/payment-session, through the order
		 * service): the open one if there is one, else a new one at the gateway that ends no later
		 * than `notAfter` (the stock reservation). 409 if the order is paid already.
		 */
		openSession: {
			params: {
				orderId: { type: "uuid" },
				userId: { type: "string", min: 1 },
				amount: { type: "number", integer: true, positive: true },
				currency: { type: "string", length: 3 },
				successUrl: { type: "string", min: 1, max: 2000 },
				cancelUrl: { type: "string", min: 1, max: 2000 },
				notAfter: { type: "string", min: 1 },
			},
			...GATEWAY_CALL,
			async handler(ctx: Context<{ orderId: string; userId: string; amount: number; currency: string; successUrl: string; cancelUrl: string; notAfter: string }>) {
				const p = ctx.params;
				const paid = () => new ConflictError("ORDER_NOT_PAYABLE", "The order is paid already");
				if (await this.paymentFor(p.orderId)) throw paid();
				const open = await this.sessionRow("order_id = :orderId AND status = 'open'", { orderId: p.orderId });
				if (open) {
					const now = await this.refreshSession(open);
					if (now.status === "open") return toSession(now);
					if (now.status === "complete") throw paid();
				}
				const { paymentSessionTtlMs } = runtimeOf(this.broker).config;
				const expiresAt = new Date(Math.min(Date.now() + paymentSessionTtlMs, new Date(p.notAfter).getTime()));
				if (!(expiresAt.getTime() > Date.now() + 1000)) throw new ConflictError("ORDER_NOT_PAYABLE", "The order's stock reservation is ending; it can no longer be paid");
				// The n-th session of the order has the n-th key: two requests at once make one session.
				const [{ n }] = await this.sql<{ n: string }>(`SELECT count(*) AS n FROM ${this.table("payment_sessions")} WHERE order_id = :orderId`, { orderId: p.orderId });
				const session = sessionOrThrow(
					await this.gateway.createSession({ orderId: p.orderId, amount: p.amount, currency: p.currency, successUrl: p.successUrl, cancelUrl: p.cancelUrl, expiresAt, idempotencyKey: `order-${p.orderId}-session-${Number(n) + 1}` }),
				);
				const row = await this.transaction(async tx => {
					const [created] = await this.sql<SessionRow>(
						`INSERT INTO ${this.table("payment_sessions")} (id, order_id, user_id, url, amount, currency, status, payment_status, success_url, cancel_url, expires_at)
						 VALUES (:id, :orderId, :userId, :url, :amount, :currency, 'open', 'unpaid', :successUrl, :cancelUrl, :expiresAt) ON CONFLICT DO NOTHING RETURNING *`,
						{ ...p, id: session.id, url: session.url, expiresAt: session.expiresAt },
						tx,
					);
					if (!created) return (await this.sessionRow("id = :id", { id: session.id }, tx)) ?? (await this.sessionRow("order_id = :orderId AND status = 'open'", p, tx));
					this.publishEvent(tx, "payment.session_created", { orderId: p.orderId, userId: p.userId, sessionId: session.id, amount: p.amount, currency: p.currency, expiresAt: session.expiresAt }, { key: p.orderId, correlationId: p.orderId });
					tx.afterCommit(() => countMetric(this.broker, "paymentSessions", { outcome: "CREATED" }));
					return created;
				}, ctx);
				if (!row) throw gatewayDown("the session could not be recorded");
				return toSession(row);
			},
		},

		/**
		 * What the shop's success page calls: the session's state asked of the gateway and applied
		 * (a completed one pays the order, once, whoever comes first: this or the webhook).
		 */
		verifySession: {
			params: { sessionId: { type: "string", min: 1, max: 200 }, userId: { type: "string", optional: true } },
			...GATEWAY_CALL,
			async handler(ctx: Context<{ sessionId: string; userId?: string }>) {
				const row = await this.sessionRow("id = :sessionId", ctx.params);
				if (!row || (ctx.params.userId !== undefined && row.user_id !== ctx.params.userId)) throw new NotFoundError("Payment session", { sessionId: ctx.params.sessionId });
				const session = sessionOrThrow(await this.gateway.getSession(row.id));
				return toSession((await this.applySession(session, undefined, ctx)) ?? row);
			},
		},

		/**
		 * A webhook whose signature the gateway service checked: recorded in the inbox with its effect
		 * in one transaction, so a replayed or duplicated one has no second effect.
		 */
		webhook: {
			params: { id: { type: "string", min: 1, max: 200 }, type: { type: "string", min: 1, max: 200 }, object: { type: "any", optional: true } },
			async handler(ctx: Context<{ id: string; type: string; object?: unknown }>) {
				const { id, type, object } = ctx.params;
				const session = SESSION_WEBHOOKS.has(type) ? sessionFromWire(object) : undefined;
				if (!session) return { received: true, ignored: true };
				const outcome = await consumeOnce(this.sequelize, this.name, { eventId: inboxId(id), eventName: type }, async tx => {
					if (!(await this.applySession(session, tx, ctx))) this.logger.warn(`Webhook ${id} (${type}) names session ${session.id}, unknown here; acknowledged.`);
				});
				return { received: true, duplicate: outcome === "duplicate" };
			},
		},

		/** The watchdog's question: the order's latest session, asked of the gateway if open; `paymentId` once paid. */
		sessionOfOrder: {
			params: { orderId: { type: "uuid" } },
			...GATEWAY_CALL,
			async handler(ctx: Context<{ orderId: string }>) {
				let row = await this.sessionRow("order_id = :orderId ORDER BY created_at DESC LIMIT 1", ctx.params);
				if (row?.status === "open") row = await this.refreshSession(row);
				const payment = await this.paymentFor(ctx.params.orderId);
				return { status: row?.status ?? "none", paymentId: payment?.status === "AUTHORIZED" ? payment.id : undefined };
			},
		},

		/**
		 * Ends the order's open session (the order ended); one already paid is applied instead. Answers
		 * the order's payment if one was taken (`paymentId`), so the saga refunds it without waiting
		 * for its payment.authorized.
		 */
		voidSession: {
			params: { orderId: { type: "uuid" } },
			...GATEWAY_CALL,
			async handler(ctx: Context<{ orderId: string }>) {
				const row = await this.sessionRow("order_id = :orderId AND status = 'open'", ctx.params);
				const status = row ? ((await this.applySession(sessionOrThrow(await this.gateway.expireSession(row.id)), undefined, ctx)) ?? row).status : "none";
				const payment = await this.paymentFor(ctx.params.orderId);
				return { status, paymentId: payment?.status === "AUTHORIZED" ? payment.id : undefined };
			},
		},

		/** Charges a card and credits the wallet; the same key and body answer the same, another body 409. */
		topUp: {
			params: {
				userId: { type: "string", min: 1 },
				amount: { type: "number", integer: true, positive: true, max: 10_000_000 },
				cardToken: { type: "string", min: 1, max: 200 },
				idempotencyKey: { type: "string", min: 1, max: 200 },
			},
			...GATEWAY_CALL,
			async handler(ctx: Context<{ userId: string; amount: number; cardToken: string; idempotencyKey: string }>) {
				const { userId, amount, cardToken, idempotencyKey } = ctx.params;
				const hash = createHash("sha256").update(JSON.stringify({ amount, cardToken })).digest("hex");
				await this.sql(
					`INSERT INTO ${this.table("top_ups")} (id, user_id, idempotency_key, request_hash, amount, status) VALUES (:id, :userId, :idempotencyKey, :hash, :amount, 'PENDING') ON CONFLICT DO NOTHING`,
					{ id: newId(), userId, idempotencyKey, hash, amount },
				);
				const [topUp] = await this.sql<{ id: string; request_hash: string; status: string; failure_code: string | null }>(
					`SELECT * FROM ${this.table("top_ups")} WHERE user_id = :userId AND idempotency_key = :idempotencyKey`,
					{ userId, idempotencyKey },
				);
				if (topUp.request_hash !== hash) throw new ConflictError("IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was used with another request");
				const declined = (code: string) => new BusinessRuleError(code === "INSUFFICIENT_FUNDS" ? "INSUFFICIENT_FUNDS" : "PAYMENT_DECLINED", "The card was declined", { code });
				if (topUp.status === "DECLINED") throw declined(topUp.failure_code ?? "PAYMENT_DECLINED");
				if (topUp.status === "PENDING") {
					const outcome = await this.gateway.charge({ amount, currency: runtimeOf(this.broker).config.storeCurrency, token: cardToken, idempotencyKey: `topup-${topUp.id}` });
					if (!outcome.ok && outcome.code === "PROVIDER_UNAVAILABLE") {
						throw new Errors.MoleculerRetryableError("The payment gateway is unavailable; retry with the same Idempotency-Key", 503, "PROVIDER_UNAVAILABLE");
					}
					if (!outcome.ok) {
						await this.sql(`UPDATE ${this.table("top_ups")} SET status = 'DECLINED', failure_code = :code WHERE id = :id`, { id: topUp.id, code: outcome.code });
						throw declined(outcome.code);
					}
				}
				// Credited at most once whatever happens around it: the wallet keys the credit by top-up.
				await ctx.call("wallet.credit", { userId, amount, reason: "TOP_UP", idempotencyKey: `topup:${topUp.id}` });
				await this.sql(`UPDATE ${this.table("top_ups")} SET status = 'SUCCEEDED' WHERE id = :id`, { id: topUp.id });
				return ctx.call("wallet.get", { userId });
			},
		},
	},

	methods: {
		async paymentFor(orderId: string, tx?: Transaction) {
			const [p] = await this.sql<PaymentRow>(`SELECT * FROM ${this.table("payments")} WHERE order_id = :orderId`, { orderId }, tx);
			return p;
		},

		/**
		 * The orders' payments opened in one statement: each a new PENDING payment, or the one an
		 * earlier try made (one row per order, so two tries for one order in a group get the same row).
		 */
		async openMany(group: NewPayment[]) {
			const rows = await this.sql<PaymentRow>(
				`INSERT INTO ${this.table("payments")} (id, order_id, user_id, method, amount, currency, status, card_token)
				 SELECT id, order_id, user_id, method, amount, currency, 'PENDING', card_token
				 FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS p(id uuid, order_id uuid, user_id text, method text, amount bigint, currency char(3), card_token text)
				 ON CONFLICT (order_id) DO UPDATE SET order_id = excluded.order_id RETURNING *, ${WITH_ROW_VERSION}`,
				{ rows: JSON.stringify([...new Map(group.map(p => [p.order_id, p])).values()]) },
			);
			const byOrder = new Map(rows.map(r => [r.order_id, r]));
			return group.map(p => byOrder.get(p.order_id)!);
		},

		/** PENDING → AUTHORIZED or FAILED with its event, once, written with the others settled meanwhile (settleMany). */
		settle(p: PaymentRow, outcome: Outcome, ctx?: Context) {
			return this.settlements.submit({ p, outcome, trace: ctx && traceOf(ctx) });
		},

		/**
		 * A group of payments settled in one transaction of one message: their rows read ahead (only a
		 * payment still PENDING moves; a concurrent twin's result wins ties), then one UPDATE for all
		 * and one insert of their events, sent with the commit. Rows as their opening returned them,
		 * with their versions, are not read again: the guard checks them all the same, and a retry reads.
		 */
		settleMany(group: Settlement[]) {
			const first = new Map<string, Settlement>();
			for (const s of group) if (!first.has(s.p.id)) first.set(s.p.id, s);
			const opened = [...first.values()].map(s => s.p).sort((a, b) => (a.id < b.id ? -1 : 1));
			let known = opened.every(p => p.row_version_) ? opened : undefined;
			const run = async (tx: Transaction) => {
				const read = this.lockedRead("payments", "id = ANY(ARRAY[:ids]::uuid[])", "id", { ids: [...first.keys()] });
				const [rows] = await this.sqlEach<[PaymentRow[]]>([{ ...read, known }], tx);
				known = undefined;
				const settled = new Map<string, PaymentRow>();
				const moved: Array<Settlement & { row: PaymentRow }> = [];
				const takenAfterFailure: string[] = [];
				for (const current of rows) {
					const { outcome, trace } = first.get(current.id)!;
					if (current.status === "PENDING") {
						const row: PaymentRow = outcome.ok
							? { ...current, status: "AUTHORIZED", charge_id: outcome.chargeId ?? null, failure_code: null, failure_reason: null }
							: { ...current, status: "FAILED", charge_id: null, failure_code: outcome.code, failure_reason: outcome.reason };
						moved.push({ p: current, outcome, trace, row });
						settled.set(row.id, row);
						continue;
					}
					// Money taken for a payment that failed meanwhile (abandoned): reconciliation gives it back.
					if (outcome.ok && current.status === "FAILED") takenAfterFailure.push(current.id);
					settled.set(current.id, current);
				}
				if (moved.length > 0) {
					const rows = moved.map(({ row, outcome }) => ({ id: row.id, status: row.status, charge_id: row.charge_id, failure_code: row.failure_code, failure_reason: row.failure_reason, reconcile: !outcome.ok && outcome.ambiguous === true }));
					this.queueSql(
						`UPDATE ${this.table("payments")} p SET status = v.status, charge_id = v.charge_id, failure_code = v.failure_code, failure_reason = v.failure_reason, reconcile = v.reconcile,
						   refund_next_at = CASE WHEN v.reconcile THEN now() ELSE p.refund_next_at END, updated_at = now()
						 FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(id uuid, status text, charge_id text, failure_code text, failure_reason text, reconcile boolean)
						 WHERE p.id = v.id AND p.id = ANY(ARRAY[:ids]::uuid[])`, // the ids: see applySteps in order.saga.ts
						{ rows: JSON.stringify(rows), ids: rows.map(r => r.id) },
						tx,
					);
				}
				if (takenAfterFailure.length > 0) {
					this.queueSql(`UPDATE ${this.table("payments")} SET reconcile = true, refund_attempts = 0, refund_next_at = now() WHERE id = ANY(ARRAY[:ids]::uuid[])`, { ids: takenAfterFailure }, tx);
				}
				for (const { p, outcome, trace } of moved) {
					const opts = { correlationId: p.order_id, key: p.order_id, trace };
					if (outcome.ok) this.publishEvent(tx, "payment.authorized", { orderId: p.order_id, userId: p.user_id, paymentId: p.id, method: p.method, amount: Number(p.amount), currency: p.currency }, opts);
					else this.publishEvent(tx, "payment.failed", { orderId: p.order_id, userId: p.user_id, code: outcome.code, reason: outcome.reason }, opts);
				}
				tx.afterCommit(() => {
					for (const { row: p } of moved) countMetric(this.broker, "payments", { method: p.method, outcome: p.status === "AUTHORIZED" ? "AUTHORIZED" : p.failure_code! });
				});
				return group.map(s => settled.get(s.p.id)!);
			};
			return this.transaction(run, undefined, { readAhead: true });
		},

		/**
		 * Payments that failed with an unknown outcome (every card try timed out, or abandoned while
		 * PENDING), or that took money after they had failed: asked again and given back. A card
		 * charge is sent again with the same key and body, which answers what the gateway did (a
		 * gateway that never saw the first request charges now; the refund follows it); a wallet
		 * payment is refunded if the wallet holds its debit.
		 */
		reconcilePayments() {
			const { refundMaxAttempts, refundRetryBaseMs } = runtimeOf(this.broker).config;
			return runSweep<PaymentRow, Reconciled>({
				claim: () => this.sql(claimSql({ table: this.table("payments"), due: `reconcile AND refund_next_at <= now() ${this.cardsWait()}`, nextColumn: "refund_next_at", attemptsColumn: "refund_attempts", leaseSeconds: 30 })),
				attempt: p => this.reconcileOnce(p),
				settled: found => found.kind !== "unknown",
				attemptsOf: p => p.refund_attempts,
				maxAttempts: refundMaxAttempts,
				retry: { baseMs: refundRetryBaseMs, maxMs: 10 * 60 * 1000 },
				record: (p, found, verdict) =>
					this.transaction(async tx => {
						const data = { orderId: p.order_id, userId: p.user_id, paymentId: p.id, amount: Number(p.amount), currency: p.currency, reason: "UNCERTAIN_CHARGE" };
						const opts = { correlationId: p.order_id, key: p.order_id };
						if (found.kind === "nothing") {
							await this.sql(`UPDATE ${this.table("payments")} SET reconcile = false WHERE id = :id`, { id: p.id }, tx);
						} else if (found.kind === "refunded") {
							await this.sql(`UPDATE ${this.table("payments")} SET reconcile = false, charge_id = COALESCE(:chargeId, charge_id), refund_error = NULL WHERE id = :id`, { id: p.id, chargeId: found.chargeId ?? null }, tx);
							this.publishEvent(tx, "payment.refunded", data, opts);
						} else if (verdict.kind === "gaveUp") {
							await this.sql(`UPDATE ${this.table("payments")} SET reconcile = false, refund_error = :error WHERE id = :id`, { id: p.id, error: found.error }, tx);
							this.publishEvent(tx, "payment.refund_failed", { ...data, error: found.error }, opts);
						} else if (verdict.kind === "retry") {
							await this.sql(`UPDATE ${this.table("payments")} SET refund_next_at = :next WHERE id = :id`, { id: p.id, next: verdict.next }, tx);
						}
					}),
			});
		},

		async sessionRow(where: string, params: Record<string, unknown>, tx?: Transaction) {
			const [row] = await this.sql<SessionRow>(`SELECT * FROM ${this.table("payment_sessions")} WHERE ${where}`, params, tx);
			return row;
		},

		/**
		 * An open session as the gateway knows it now (paid, expired or still open), applied. A gateway
		 * that cannot be reached leaves a session that has not expired as it is; one past its expiry
		 * cannot be judged without it (503).
		 */
		async refreshSession(row: SessionRow) {
			if (row.status !== "open") return row;
			const asked = await this.gateway.getSession(row.id);
			if (!asked.ok) {
				if (new Date(row.expires_at).getTime() > Date.now()) return row;
				throw gatewayDown(asked.reason);
			}
			return (await this.applySession(asked.session, undefined)) ?? row;
		},

		/**
		 * Where a session's outcome is applied, from the verification, the webhook or the watchdog
		 * alike: only a session still open here moves (the first report wins, the others find it
		 * moved). Completed and paid: the order's payment, AUTHORIZED, with `payment.authorized`, as
		 * a card payment; expired: `payment.session_expired` (the order may open another). A second
		 * payment for one order (the gateway charged twice) is marked for refundSecondCharges.
		 */
		async applySession(session: GatewaySession, tx?: Transaction, ctx?: Context) {
			const run = async (tx: Transaction) => {
				const row = await this.sessionRow("id = :id FOR UPDATE", { id: session.id }, tx);
				if (!row || row.status !== "open" || session.status === "open" || (session.status === "complete" && session.paymentStatus !== "paid")) return row;
				const opts = { key: row.order_id, correlationId: row.order_id };
				const [moved] = await this.sql<SessionRow>(
					`UPDATE ${this.table("payment_sessions")} SET status = :status, payment_status = :paymentStatus, charge_id = :chargeId, updated_at = now() WHERE id = :id RETURNING *`,
					{ id: row.id, status: session.status, paymentStatus: session.paymentStatus, chargeId: session.chargeId },
					tx,
				);
				tx.afterCommit(() => countMetric(this.broker, "paymentSessions", { outcome: session.status === "complete" ? "COMPLETED" : "EXPIRED" }));
				if (session.status === "expired") {
					this.publishEvent(tx, "payment.session_expired", { orderId: row.order_id, userId: row.user_id, sessionId: row.id }, opts);
					return moved;
				}
				const [payment] = await this.sql<PaymentRow>(
					`INSERT INTO ${this.table("payments")} (id, order_id, user_id, method, amount, currency, status, charge_id)
					 VALUES (:id, :orderId, :userId, 'CARD', :amount, :currency, 'AUTHORIZED', :chargeId) ON CONFLICT (order_id) DO NOTHING RETURNING *`,
					{ id: newId(), orderId: row.order_id, userId: row.user_id, amount: row.amount, currency: row.currency, chargeId: session.chargeId },
					tx,
				);
				if (payment) {
					this.publishEvent(tx, "payment.authorized", { orderId: row.order_id, userId: row.user_id, paymentId: payment.id, method: "CARD", amount: Number(row.amount), currency: row.currency }, opts);
					tx.afterCommit(() => countMetric(this.broker, "payments", { method: "CARD", outcome: "AUTHORIZED" }));
					return moved;
				}
				this.logger.warn(`Session ${row.id} paid order ${row.order_id}, which has its payment already: its charge ${session.chargeId} is refunded.`);
				const [refunding] = await this.sql<SessionRow>(
					`UPDATE ${this.table("payment_sessions")} SET refund_status = 'PENDING', refund_next_at = now() WHERE id = :id RETURNING *`,
					{ id: row.id },
					tx,
				);
				tx.afterCommit(() => void this.refundSecondCharges());
				return refunding;
			};
			return tx ? run(tx) : this.transaction(run, ctx);
		},

		/**
		 * The charges of sessions that paid an order paid already, given back (key
		 * `session-<id>-refund`, so a retry never refunds twice) with the refunds' retries; after the
		 * last try the session says REFUND_FAILED and the log names the charge for an operator. The
		 * order is not told: its own payment is another one.
		 */
		refundSecondCharges() {
			const { refundMaxAttempts, refundRetryBaseMs } = runtimeOf(this.broker).config;
			return runSweep<SessionRow & { refund_next_at: Date }, RefundTry>({
				claim: () => this.sql(claimSql({ table: this.table("payment_sessions"), due: "refund_status = 'PENDING' AND refund_next_at <= now()", nextColumn: "refund_next_at", attemptsColumn: "refund_attempts", leaseSeconds: 30 })),
				attempt: s => this.gateway.refund({ chargeId: s.charge_id!, amount: Number(s.amount), idempotencyKey: `session-${s.id}-refund` }),
				settled: outcome => outcome.ok,
				attemptsOf: s => s.refund_attempts,
				maxAttempts: refundMaxAttempts,
				retry: { baseMs: refundRetryBaseMs, maxMs: 10 * 60 * 1000 },
				record: async (s, outcome, verdict) => {
					const error = outcome.ok ? null : outcome.reason;
					if (verdict.kind === "gaveUp") this.logger.error(`The second charge ${s.charge_id} of order ${s.order_id} (session ${s.id}) could not be refunded after ${s.refund_attempts} tries (${error}): refund it by hand.`);
					await this.sql(
						`UPDATE ${this.table("payment_sessions")} SET refund_status = :status, refund_error = :error, refund_next_at = COALESCE(:next, refund_next_at), updated_at = now() WHERE id = :id`,
						{ id: s.id, status: verdict.kind === "done" ? "REFUNDED" : verdict.kind === "gaveUp" ? "FAILED" : "PENDING", error, next: verdict.kind === "retry" ? verdict.next : null },
					);
				},
			});
		},

		/** Card work waits while the gateway's circuit is open rather than spend its tries on it. */
		cardsWait() {
			return this.gateway.breaker.state === "open" ? "AND method = 'WALLET'" : "";
		},

		/** Whether a payment of unknown outcome took money: nothing, taken and refunded now, or not known yet. */
		async reconcileOnce(p: PaymentRow): Promise<Reconciled> {
			if (p.method === "WALLET") {
				const refund = await this.refundOnce(p);
				if (refund.ok) return { kind: "refunded" };
				return refund.nothingTaken ? { kind: "nothing" } : { kind: "unknown", error: refund.reason };
			}
			const amount = Number(p.amount);
			const charge = await this.gateway.charge({ amount, currency: p.currency, token: p.card_token ?? "", idempotencyKey: chargeKey(p.order_id) });
			if (!charge.ok) return charge.code === "PROVIDER_UNAVAILABLE" ? { kind: "unknown", error: charge.reason } : { kind: "nothing" };
			const refund = await this.gateway.refund({ chargeId: charge.chargeId, amount, idempotencyKey: refundKey(p.order_id) });
			return refund.ok ? { kind: "refunded", chargeId: charge.chargeId } : { kind: "unknown", error: refund.reason };
		},

		/** Payments PENDING longer than PAYMENT_ABANDON_MS: their attempt died with its node; failed, then reconciled. */
		async abandonStalePayments() {
			const { paymentAbandonMs } = runtimeOf(this.broker).config;
			const stale = await this.sql<PaymentRow>(
				`SELECT * FROM ${this.table("payments")} WHERE status = 'PENDING' AND created_at < now() - make_interval(secs => :s) ORDER BY created_at LIMIT 20`,
				{ s: paymentAbandonMs / 1000 },
			);
			for (const p of stale) {
				this.logger.warn(`Payment of order ${p.order_id} still PENDING after ${paymentAbandonMs} ms: failed, and reconciled in case money was taken.`);
				await this.settle(p, { ok: false, code: "PROVIDER_UNAVAILABLE", reason: "The payment had no outcome in time", ambiguous: true });
			}
		},

		async refundOnce(p: PaymentRow): Promise<RefundTry> {
			const amount = Number(p.amount);
			if (amount === 0) return { ok: true };
			if (p.method === "WALLET") {
				try {
					await this.broker.call("wallet.credit", { userId: p.user_id, amount, reason: "REFUND", orderId: p.order_id });
					return { ok: true };
				} catch (err) {
					return { ok: false, reason: (err as Error).message, nothingTaken: (err as Errors.MoleculerError).type === "NOTHING_TO_REFUND" };
				}
			}
			return this.gateway.refund({ chargeId: p.charge_id!, amount, idempotencyKey: refundKey(p.order_id) });
		},

		/**
		 * Tries the refunds that are due (or one of them): each is claimed for 30 s so one node works on
		 * it, then REFUNDED, or retried later with backoff, or REFUND_FAILED after the last try. Card
		 * refunds wait while the gateway's circuit is open rather than spend their tries on it.
		 */
		attemptRefunds(paymentId?: string) {
			const { refundMaxAttempts, refundRetryBaseMs } = runtimeOf(this.broker).config;
			return runSweep<PaymentRow, RefundTry>({
				claim: () =>
					this.sql(claimSql({ table: this.table("payments"), due: `status = 'REFUND_PENDING' AND refund_next_at <= now() ${paymentId ? "AND id = :paymentId" : ""} ${this.cardsWait()}`, nextColumn: "refund_next_at", attemptsColumn: "refund_attempts", leaseSeconds: 30 }), {
						paymentId,
					}),
				attempt: p => this.refundOnce(p),
				settled: outcome => outcome.ok,
				attemptsOf: p => p.refund_attempts,
				maxAttempts: refundMaxAttempts,
				retry: { baseMs: refundRetryBaseMs, maxMs: 10 * 60 * 1000 },
				record: (p, outcome, verdict) =>
					this.transaction(async tx => {
						const data = { orderId: p.order_id, userId: p.user_id, paymentId: p.id, amount: Number(p.amount), currency: p.currency, reason: p.refund_reason };
						const opts = { correlationId: p.order_id, key: p.order_id };
						const error = outcome.ok ? null : outcome.reason;
						if (verdict.kind === "done") {
							await this.sql(`UPDATE ${this.table("payments")} SET status = 'REFUNDED', refund_error = NULL, updated_at = now() WHERE id = :id`, { id: p.id }, tx);
							this.publishEvent(tx, "payment.refunded", data, opts);
						} else if (verdict.kind === "gaveUp") {
							await this.sql(`UPDATE ${this.table("payments")} SET status = 'REFUND_FAILED', refund_error = :error, updated_at = now() WHERE id = :id`, { id: p.id, error }, tx);
							this.publishEvent(tx, "payment.refund_failed", { ...data, error }, opts);
							this.logger.error(`Refund of order ${p.order_id} failed after ${p.refund_attempts} tries: ${error}`);
						} else {
							await this.sql(`UPDATE ${this.table("payments")} SET refund_next_at = :next, refund_error = :error WHERE id = :id`, { id: p.id, next: verdict.next, error }, tx);
						}
					}),
			});
		},
	},

	created() {
		const { eventBatchMax } = runtimeOf(this.broker).config;
		this.openings = new GroupCommit(group => this.openMany(group), eventBatchMax);
		this.settlements = new GroupCommit(group => this.settleMany(group), eventBatchMax);
	},

	async started() {
		const { config } = runtimeOf(this.broker);
		let url = config.paymentGatewayUrl;
		if (!url) {
			this.mock = await startMockGateway({
				// This node's own gateway, wherever it listens (PORT=0 picks a port when it starts).
				webhookUrl: () => config.mockGatewayWebhookUrl ?? `http://127.0.0.1:${(this.broker.getLocalService("gateway") as any)?.listeningPort?.() ?? config.port}/api/webhooks/payment-gateway`,
				webhookSecret: config.paymentWebhookSecret ?? "",
			});
			url = this.mock.url;
			this.logger.info(`No PAYMENT_GATEWAY_URL: the mock card gateway runs in-process at ${url}.`);
		}
		this.gateway = new CardGateway(url, {
			timeoutMs: config.paymentTimeoutMs,
			retries: config.paymentRetries,
			breaker: new CircuitBreaker(config.paymentBreakerThreshold, config.paymentBreakerOpenMs),
		});
		this.refundSweep = runEvery(
			Math.max(50, Math.min(1000, config.refundRetryBaseMs)),
			async () => {
				await this.attemptRefunds();
				await this.abandonStalePayments();
				await this.reconcilePayments();
				await this.refundSecondCharges();
			},
			this.logger,
			"Refund sweep",
		);
	},

	async stopped() {
		await this.refundSweep?.stop();
		await this.mock?.close();
	},
};

export default PaymentService;
