import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Transaction } from "../lib/transactions";
import { DbMixin } from "../mixins/db.mixin";
import { EventsMixin, type EventsService } from "../mixins/events.mixin";
import { runtimeOf } from "../lib/runtime";
import { isUniqueViolation, WITH_ROW_VERSION } from "../lib/sql";
import { BusinessRuleError } from "../lib/errors";
import { pageParams } from "../lib/paging";
import { GroupCommit } from "../lib/batch";
import { FirstTries, KnownRows } from "../lib/known-rows";
import { traceOf, type TraceRef } from "../lib/events/envelope";
import { applyDebits } from "../lib/domain/wallet";
import { newId } from "../lib/ids";

type Reason = "PAYMENT" | "REFUND" | "TOP_UP" | "ADJUSTMENT";

interface LedgerRow {
	id: string;
	user_id: string;
	type: "DEBIT" | "CREDIT";
	reason: Reason;
	amount: string;
	balance_after: string;
	order_id: string | null;
	note: string | null;
	created_at: Date;
}

interface Movement {
	userId: string;
	amount: number;
	type: "DEBIT" | "CREDIT";
	reason: Reason;
	orderId?: string;
	idempotencyKey?: string;
	note?: string;
	/** The trace its event continues, when it is written apart from its request (group commit). */
	trace?: TraceRef;
}

/** bigint columns come back as strings; amounts stay far below 2^53 (checked on the way in). */
const toLedgerEntry = (r: LedgerRow) => ({
	id: r.id,
	type: r.type,
	reason: r.reason,
	amount: Number(r.amount),
	balanceAfter: Number(r.balance_after),
	orderId: r.order_id ?? undefined,
	note: r.note ?? undefined,
	createdAt: new Date(r.created_at).toISOString(),
});
type LedgerEntry = ReturnType<typeof toLedgerEntry>;
type Moved = { transaction: LedgerEntry; balance: number };

const amountRule = { type: "number", integer: true, positive: true, max: Number.MAX_SAFE_INTEGER } as const;
const userIdRule = { type: "string", min: 1, max: 200 } as const;

type WalletRow = { user_id: string; balance: string };
/** What a node keeps of the wallets it debited last and the orders it debited for: those in checkout now. */
const KNOWN_ROWS_MAX = 5_000;
const KNOWN_ROWS_TTL_MS = 60_000;

type WalletThis = EventsService & {
	currency(): string;
	ensureWallet(userId: string, tx?: Transaction): Promise<void>;
	existingMovement(m: Movement, tx?: Transaction): Promise<LedgerEntry | undefined>;
	move(m: Movement, ctx?: Context): Promise<Moved>;
	/** Order payments, debited in groups (debitPayments). */
	payments: GroupCommit<Movement, Moved>;
	debitPayments(debits: Movement[]): Promise<Array<Moved | Error>>;
	/** The wallets this node debited last, as written (used while it is the only wallet node). */
	knownWallets: KnownRows<WalletRow>;
	/** Orders whose first debit here assumes none was made before. */
	firstDebits: FirstTries;
	walletOf(userId: string): Promise<{ userId: string; balance: number; currency: string }>;
};

/**
 * Balances in cents and their ledger (SPEC section 6, Wallet). Every movement is one transaction:
 * a conditional UPDATE (never below zero), a ledger row with `balanceAfter`, and the event in the
 * outbox. Unique indexes hold "one PAYMENT debit and one REFUND credit per order"; a repeated
 * movement returns the first one's result, so callers may retry.
 */
const WalletService: ServiceSchema<ServiceSettingSchema, Record<string, any>, Record<string, any>, WalletThis> = {
	name: "wallet",
	mixins: [
		DbMixin({
			migrations: [
				{
					id: "wallet-001-wallets-ledger",
					sql: `
						CREATE TABLE wallets (
							user_id text PRIMARY KEY,
							balance bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
							currency char(3) NOT NULL,
							created_at timestamptz NOT NULL DEFAULT now(),
							updated_at timestamptz NOT NULL DEFAULT now()
						);
						CREATE TABLE wallet_transactions (
							id uuid PRIMARY KEY,
							user_id text NOT NULL REFERENCES wallets (user_id),
							type text NOT NULL CHECK (type IN ('DEBIT', 'CREDIT')),
							reason text NOT NULL CHECK (reason IN ('PAYMENT', 'REFUND', 'TOP_UP', 'ADJUSTMENT')),
							amount bigint NOT NULL CHECK (amount > 0),
							balance_after bigint NOT NULL CHECK (balance_after >= 0),
							order_id uuid,
							idempotency_key text,
							note text,
							created_at timestamptz NOT NULL DEFAULT clock_timestamp()
						);
						CREATE UNIQUE INDEX wallet_one_payment_per_order ON wallet_transactions (order_id) WHERE reason = 'PAYMENT';
						CREATE UNIQUE INDEX wallet_one_refund_per_order ON wallet_transactions (order_id) WHERE reason = 'REFUND';
						CREATE UNIQUE INDEX wallet_idempotency ON wallet_transactions (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
						CREATE INDEX wallet_transactions_by_user ON wallet_transactions (user_id, created_at DESC, id);`,
				},
			],
		}),
		EventsMixin(),
	],

	created() {
		this.payments = new GroupCommit(debits => this.debitPayments(debits), runtimeOf(this.broker).config.eventBatchMax);
		this.knownWallets = new KnownRows<WalletRow>(row => row.user_id, KNOWN_ROWS_MAX, KNOWN_ROWS_TTL_MS);
		this.firstDebits = new FirstTries(KNOWN_ROWS_MAX, KNOWN_ROWS_TTL_MS);
	},

	actions: {
		/** The caller's wallet; one at 0 is created on first use. */
		get: {
			params: { userId: userIdRule },
			handler(ctx: Context<{ userId: string }>) {
				return this.walletOf(ctx.params.userId);
			},
		},

		/** A PAYMENT debit for an order (at most one per order). INSUFFICIENT_FUNDS changes nothing. */
		debit: {
			params: { userId: userIdRule, amount: amountRule, orderId: { type: "uuid" } },
			async handler(ctx: Context<{ userId: string; amount: number; orderId: string }>) {
				const debit: Movement = { ...ctx.params, type: "DEBIT", reason: "PAYMENT", trace: traceOf(ctx) };
				try {
					return await this.payments.submit(debit);
				} catch (err) {
					// A concurrent twin (another node) committed first: answer with its result, as a retry would get.
					const repeated = isUniqueViolation(err) ? await this.existingMovement(debit) : undefined;
					if (repeated) return { transaction: repeated, balance: repeated.balanceAfter };
					throw err;
				}
			},
		},

		/** A REFUND of an order's payment (once, at most what was paid) or a TOP_UP (idempotent by key). */
		credit: {
			params: {
				userId: userIdRule,
				amount: amountRule,
				reason: { type: "enum", values: ["REFUND", "TOP_UP"] },
				orderId: { type: "uuid", optional: true },
				idempotencyKey: { type: "string", min: 1, max: 200, optional: true },
			},
			handler(ctx: Context<{ userId: string; amount: number; reason: "REFUND" | "TOP_UP"; orderId?: string; idempotencyKey?: string }>) {
				const { reason, orderId, idempotencyKey } = ctx.params;
				if (reason === "REFUND" && !orderId) throw new BusinessRuleError("REFUND_WITHOUT_ORDER", "A refund names the order it refunds");
				if (reason === "TOP_UP" && !idempotencyKey) throw new BusinessRuleError("IDEMPOTENCY_KEY_REQUIRED", "A top-up needs an idempotency key");
				return this.move({ ...ctx.params, type: "CREDIT" }, ctx);
			},
		},

		/** Admin adjustment: positive credits, negative debits, never below a zero balance. */
		adjust: {
			params: {
				userId: userIdRule,
				amount: { type: "number", integer: true, notEqual: 0, min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER },
				reason: { type: "string", min: 1, max: 500 },
			},
			retryPolicy: { enabled: false }, // not idempotent: a retried adjustment would apply twice
			async handler(ctx: Context<{ userId: string; amount: number; reason: string }>) {
				const { userId, amount, reason } = ctx.params;
				await this.move({ userId, amount: Math.abs(amount), type: amount > 0 ? "CREDIT" : "DEBIT", reason: "ADJUSTMENT", note: reason }, ctx);
				return this.walletOf(userId);
			},
		},

		/** The ledger, newest first, paged. */
		transactions: {
			params: { userId: userIdRule, ...pageParams },
			async handler(ctx: Context<{ userId: string; page: number; pageSize: number }>) {
				return this.paged({ table: this.table("wallet_transactions"), where: "user_id = :userId", orderBy: "created_at DESC, id DESC" }, { userId: ctx.params.userId }, ctx.params, toLedgerEntry);
			},
		},
	},

	methods: {
		currency() {
			return runtimeOf(this.broker).config.storeCurrency;
		},

		async ensureWallet(userId: string, tx?: Transaction) {
			await this.sql(`INSERT INTO ${this.table("wallets")} (user_id, currency) VALUES (:userId, :currency) ON CONFLICT (user_id) DO NOTHING`, { userId, currency: this.currency() }, tx);
		},

		async walletOf(userId: string) {
			await this.ensureWallet(userId);
			const [w] = await this.sql<{ balance: string; currency: string }>(`SELECT balance, currency FROM ${this.table("wallets")} WHERE user_id = :userId`, { userId });
			return { userId, balance: Number(w.balance), currency: w.currency };
		},

		/** The movement this one repeats (same order and reason, or same idempotency key), if any. */
		async existingMovement(m: Movement, tx?: Transaction) {
			const byOrder = m.orderId && (m.reason === "PAYMENT" || m.reason === "REFUND");
			if (!byOrder && !m.idempotencyKey) return undefined;
			const [row] = await this.sql<LedgerRow>(
				byOrder
					? `SELECT * FROM ${this.table("wallet_transactions")} WHERE order_id = :orderId AND reason = :reason`
					: `SELECT * FROM ${this.table("wallet_transactions")} WHERE user_id = :userId AND idempotency_key = :key`,
				{ orderId: m.orderId ?? null, reason: m.reason, userId: m.userId, key: m.idempotencyKey ?? null },
				tx,
			);
			return row ? toLedgerEntry(row) : undefined;
		},

		/**
		 * A group of order payments in one transaction: the orders' earlier debits read and the
		 * wallets locked once each, every debit decided in arrival order (applyDebits: whole or
		 * refused), then one statement each for the balances, the ledger rows and their events, sent
		 * with the commit (the ledger rows are written as answered: their time is this node's). A
		 * repeated debit answers the first one's result; a refused one is INSUFFICIENT_FUNDS alone.
		 * Not read ahead (the guards check them all the same): the earlier debits of orders this node
		 * meets first (none), and the wallets it debited last, while it is the only wallet node.
		 */
		debitPayments(debits: Movement[]) {
			const t = (name: string) => this.table(name);
			const orderIds = [...new Set(debits.map(d => d.orderId!))];
			const users = [...new Set(debits.map(d => d.userId))];
			const run = async (tx: Transaction) => {
				// One message, read ahead: the wallets of every debit, a repeated one's too (rare, and harmless).
				// Wallets in byte order (COLLATE "C"), as remembered ones are sorted, whatever the database's collation.
				const [earlier, wallets] = await this.sqlEach<[LedgerRow[], WalletRow[]]>(
					[
						{ ...this.lockedRead("wallet_transactions", "order_id = ANY(ARRAY[:orderIds]::uuid[]) AND reason = 'PAYMENT'", "order_id", { orderIds }), known: this.firstDebits.noRowsYet(orderIds) },
						{ ...this.lockedRead("wallets", "user_id = ANY(ARRAY[:users]::text[])", `user_id COLLATE "C"`, { users }, "user_id, balance"), known: this.soleNode() ? this.knownWallets.take(users) : undefined },
					],
					tx,
				);
				const repeated = new Map(earlier.map(r => [r.order_id, toLedgerEntry(r)]));
				const seen = new Set<string>();
				const fresh = debits.filter(d => !repeated.has(d.orderId!) && !seen.has(d.orderId!) && seen.add(d.orderId!));
				const { after, changed } = applyDebits(new Map(wallets.map(w => [w.user_id, Number(w.balance)])), fresh);
				const taken = fresh.flatMap((d, i) => (after[i] === undefined ? [] : [{ ...d, id: newId(), balance: after[i]! }]));
				if (taken.length > 0) {
					this.queueSql(
						`UPDATE ${t("wallets")} w SET balance = v.balance, updated_at = now() FROM unnest(ARRAY[:users]::text[], ARRAY[:balances]::bigint[]) AS v(user_id, balance) WHERE w.user_id = v.user_id
						 RETURNING w.user_id, w.balance, ${WITH_ROW_VERSION}`,
						{ users: [...changed.keys()], balances: [...changed.values()] },
						tx,
						written => this.knownWallets.remember(written as WalletRow[], tx),
					);
					const at = new Date();
					this.queueSql(
						`INSERT INTO ${t("wallet_transactions")} (id, user_id, type, reason, amount, balance_after, order_id, created_at)
						 SELECT id, user_id, 'DEBIT', 'PAYMENT', amount, balance, order_id, :at FROM unnest(ARRAY[:ids]::uuid[], ARRAY[:users]::text[], ARRAY[:amounts]::bigint[], ARRAY[:balances]::bigint[], ARRAY[:orderIds]::uuid[])
						   AS m(id, user_id, amount, balance, order_id)`,
						{ ids: taken.map(m => m.id), users: taken.map(m => m.userId), amounts: taken.map(m => m.amount), balances: taken.map(m => m.balance), orderIds: taken.map(m => m.orderId), at },
						tx,
					);
					for (const m of taken) {
						const row: LedgerRow = { id: m.id, user_id: m.userId, type: "DEBIT", reason: "PAYMENT", amount: String(m.amount), balance_after: String(m.balance), order_id: m.orderId ?? null, note: null, created_at: at };
						repeated.set(m.orderId!, toLedgerEntry(row));
					}
					for (const m of taken) this.publishEvent(tx, "wallet.debited", { userId: m.userId, amount: m.amount, balanceAfter: m.balance, orderId: m.orderId, reason: "PAYMENT" }, { key: m.userId, correlationId: m.orderId, trace: m.trace });
				}
				return debits.map(d => {
					const entry = repeated.get(d.orderId!);
					return entry ? { transaction: entry, balance: entry.balanceAfter } : new BusinessRuleError("INSUFFICIENT_FUNDS", "The wallet balance does not cover the amount", { userId: d.userId, amount: d.amount });
				});
			};
			return this.transaction(run, undefined, { readAhead: true });
		},

		async move(m: Movement, ctx?: Context) {
			const t = (name: string) => this.table(name);
			this.knownWallets.forget([m.userId]); // a debit group reads it again
			try {
				return await this.transaction(async tx => {
					await this.ensureWallet(m.userId, tx);
					const repeated = await this.existingMovement(m, tx);
					if (repeated) return { transaction: repeated, balance: repeated.balanceAfter };
					if (m.reason === "REFUND") {
						const paid = await this.existingMovement({ ...m, reason: "PAYMENT", type: "DEBIT" }, tx);
						if (!paid) throw new BusinessRuleError("NOTHING_TO_REFUND", "The order has no wallet payment to refund", { orderId: m.orderId });
						if (m.amount > paid.amount) throw new BusinessRuleError("REFUND_EXCEEDS_PAYMENT", `At most ${paid.amount} can be refunded`, { orderId: m.orderId });
					}
					// One conditional statement: concurrent debits serialize on the row and none goes below 0.
					const updated = await this.sql<{ balance: string }>(
						m.type === "DEBIT"
							? `UPDATE ${t("wallets")} SET balance = balance - :amount, updated_at = now() WHERE user_id = :userId AND balance >= :amount RETURNING balance`
							: `UPDATE ${t("wallets")} SET balance = balance + :amount, updated_at = now() WHERE user_id = :userId RETURNING balance`,
						{ userId: m.userId, amount: m.amount },
						tx,
					);
					if (updated.length === 0) {
						throw new BusinessRuleError("INSUFFICIENT_FUNDS", "The wallet balance does not cover the amount", { userId: m.userId, amount: m.amount });
					}
					const balance = Number(updated[0].balance);
					const [row] = await this.sql<LedgerRow>(
						`INSERT INTO ${t("wallet_transactions")} (id, user_id, type, reason, amount, balance_after, order_id, idempotency_key, note)
						 VALUES (:id, :userId, :type, :reason, :amount, :balance, :orderId, :key, :note) RETURNING *`,
						{
							id: newId(),
							userId: m.userId,
							type: m.type,
							reason: m.reason,
							amount: m.amount,
							balance,
							orderId: m.orderId ?? null,
							key: m.idempotencyKey ?? null,
							note: m.note ?? null,
						},
						tx,
					);
					this.publishEvent(tx, m.type === "DEBIT" ? "wallet.debited" : "wallet.credited", {
						userId: m.userId,
						amount: m.amount,
						balanceAfter: balance,
						orderId: m.orderId,
						reason: m.reason,
					}, { key: m.userId, correlationId: m.orderId });
					return { transaction: toLedgerEntry(row), balance };
				}, ctx);
			} catch (err) {
				// A concurrent twin committed first: answer with its result, as a retry would get.
				if (isUniqueViolation(err)) {
					const repeated = await this.existingMovement(m);
					if (repeated) return { transaction: repeated, balance: repeated.balanceAfter };
				}
				throw err;
			}
		},
	},
};

export default WalletService;
