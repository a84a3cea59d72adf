import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { DbMixin } from "../mixins/db.mixin";
import { EventsMixin, typedHandler, type EventsService } from "../mixins/events.mixin";
import { RedlockMixin, type RedlockMethods } from "../mixins/redlock.mixin";
import { runtimeOf } from "../lib/runtime";
import { isUniqueViolation, WITH_ROW_VERSION, type LockedRead } from "../lib/sql";
import { BusinessRuleError, ConflictError, NotFoundError } from "../lib/errors";
import { pageParams } from "../lib/paging";
import { allocate, type RequestedLine, type Shortage, type StockLevel } from "../lib/domain/stock";
import type { CatalogueEntry } from "../lib/domain/cart";
import type { DomainEvent } from "../lib/events/envelope";
import { DEMO_CATALOGUE } from "../lib/seed/catalogue";
import { runEvery, type Periodic } from "../lib/periodic";
import { countMetric } from "../lib/metrics";
import { beforeCommit, type Transaction } from "../lib/transactions";
import { GroupCommit } from "../lib/batch";
import { FirstTries, KnownRows } from "../lib/known-rows";
import { RecentMap } from "../lib/recent-map";
import { CacheVersions, versionedKeygen } from "../lib/cache-versions";
import { newId } from "../lib/ids";

interface ProductRow {
	id: string;
	sku: string;
	name: string;
	description: string;
	category: string;
	price: string;
	currency: string;
	image_url: string | null;
	active: boolean;
	on_hand: number;
	reserved: number;
}

const byId = (rows: ProductRow[]) => new Map(rows.map(r => [r.id, r]));
const byOrder = (rows: ReservationRow[]) => new Map(rows.map(r => [r.order_id, r]));

type ReservationStatus = "RESERVED" | "COMMITTED" | "RELEASED" | "RETURNED" | "FAILED";
interface ReservationRow {
	order_id: string;
	status: ReservationStatus;
	expires_at: Date;
	shortages: Shortage[] | null;
	release_reason: string | null;
}

export type ReleaseReason = "PAYMENT_FAILED" | "EXPIRED" | "CANCELLED";
export type ReserveResult = { ok: true; expiresAt: string } | { ok: false; reason: "OUT_OF_STOCK"; lines: Shortage[] } | { ok: false; reason: "RELEASED" };
export type CommitResult = { ok: true } | { ok: false; reason: "NO_RESERVATION" | "RESERVATION_GONE" };
/** A reservation to commit, and the payment it follows when its `payment.authorized` asked (passed on in `stock.committed`). */
type CommitRequest = { orderId: string; paymentId?: string; cause?: DomainEvent };
type LineRow = { order_id: string; product_id: string; quantity: number };
/** What a node keeps of the rows it wrote last (lib/known-rows.ts): the orders in checkout now, and their products. */
const KNOWN_ROWS_MAX = 5_000;
const KNOWN_ROWS_TTL_MS = 60_000;

const productKey = (id: string) => `product:${id}`;
/** Per transaction, the products whose level it changed (the latest row) and the event that caused it. */
const levelsChanged = new WeakMap<Transaction, Map<string, { row: ProductRow; cause?: DomainEvent }>>();
const toProduct = (r: ProductRow) => ({
	id: r.id,
	sku: r.sku,
	name: r.name,
	description: r.description,
	category: r.category,
	price: Number(r.price),
	currency: r.currency,
	imageUrl: r.image_url,
	available: r.on_hand - r.reserved,
	active: r.active,
});
const toCatalogueEntry = (r: ProductRow): CatalogueEntry => ({ id: r.id, sku: r.sku, name: r.name, price: Number(r.price), currency: r.currency, active: r.active, available: r.on_hand - r.reserved });
const toLevel = (r: ProductRow) => ({ productId: r.id, sku: r.sku, name: r.name, onHand: r.on_hand, reserved: r.reserved, available: r.on_hand - r.reserved });

/** The highest price a product may have, in cents (10,000,000.00). */
export const MAX_PRICE = 1_000_000_000;
const SORTS: Record<string, string> = { price: "price ASC, id", "-price": "price DESC, id", name: "name ASC, id" };
const itemsRule = {
	type: "array",
	min: 1,
	max: 50,
	items: { type: "object", strict: "remove", props: { productId: { type: "uuid" }, quantity: { type: "number", integer: true, min: 1, max: 99 } } },
} as const;

type InventoryThis = EventsService &
	RedlockMethods & {
		sweep?: Periodic;
		/** Availability reads: those that arrive while one runs are read together (one SELECT). */
		availabilityReads: GroupCommit<string[], CatalogueEntry[]>;
		/** The versions the cached reads' keys name: a stock change makes the changed products' entries old. */
		cacheVersions: CacheVersions;
		/** Rows this node wrote last, for the next reservation or commit instead of a read ahead. */
		knownProducts: KnownRows<ProductRow>;
		knownReservations: KnownRows<ReservationRow>;
		/** A reservation's lines as it wrote them (they never change), sorted by product. */
		reservedLines: RecentMap<string, LineRow[]>;
		/** Orders whose first reservation assumes none was made before. */
		firstReservations: FirstTries;
		knownProductRows(ids: string[]): ProductRow[] | undefined;
		productsToDecide(ids: string[], tx: Transaction): { read: LockedRead; changed: ProductRow[] };
		readAvailability(groups: string[][]): Promise<CatalogueEntry[][]>;
		ttlMs(): number;
		productRow(id: string): Promise<ProductRow>;
		lockProducts(ids: string[], tx: Transaction): Promise<Map<string, ProductRow>>;
		productsLock(ids: string[]): LockedRead;
		reservationsLock(orderIds: string[]): LockedRead;
		stockChanged(rows: ProductRow[], tx: Transaction, cause?: DomainEvent): void;
		reserveMany(tx: Transaction, requests: Array<{ orderId: string; items: RequestedLine[]; cause?: DomainEvent }>, opts?: { firstDelivery?: boolean }): Promise<Map<string, ReserveResult>>;
		commitMany(tx: Transaction, requests: CommitRequest[]): Promise<Map<string, CommitResult>>;
		toCommit(orderIds: string[], tx: Transaction): Promise<[ReservationRow[], LineRow[], ProductRow[]]>;
		reservationsFor(orderIds: string[], tx: Transaction): Promise<Map<string, ReservationRow>>;
		releaseIn(tx: Transaction, orderId: string, reason: ReleaseReason, cause?: DomainEvent): Promise<ReservationStatus>;
		releaseExpired(): Promise<number>;
		seedCatalogue(): Promise<number>;
	};

/** The cache key of a read that depends on the whole catalogue (a list, the categories): any product change renews it. */
const catalogueKeygen = versionedKeygen((s: InventoryThis) => s.cacheVersions.ofAll());

/**
 * Catalogue, stock levels and reservations (SPEC sections 5 and 6). A reservation takes every line
 * or none, under the Redlock of each product (sorted keys) and the products' row locks, so neither
 * many nodes nor concurrent orders can oversell. Levels never go negative (CHECK constraints), and a
 * stock movement ledger records every change of `onHand`.
 */
const InventoryService: ServiceSchema<ServiceSettingSchema, Record<string, any>, Record<string, any>, InventoryThis> = {
	name: "inventory",
	mixins: [
		DbMixin({
			migrations: [
				{
					id: "inventory-001-products-reservations",
					sql: `
						CREATE TABLE products (
							id uuid PRIMARY KEY,
							sku text NOT NULL UNIQUE,
							name text NOT NULL,
							description text NOT NULL DEFAULT '',
							category text NOT NULL,
							price bigint NOT NULL CHECK (price >= 0),
							currency char(3) NOT NULL,
							image_url text,
							active boolean NOT NULL DEFAULT true,
							on_hand integer NOT NULL CHECK (on_hand >= 0),
							reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= on_hand),
							created_at timestamptz NOT NULL DEFAULT now(),
							updated_at timestamptz NOT NULL DEFAULT now()
						);
						CREATE INDEX products_category ON products (category, price);
						CREATE TABLE reservations (
							order_id uuid PRIMARY KEY,
							status text NOT NULL CHECK (status IN ('RESERVED', 'COMMITTED', 'RELEASED', 'RETURNED', 'FAILED')),
							expires_at timestamptz NOT NULL,
							shortages jsonb,
							release_reason text,
							created_at timestamptz NOT NULL DEFAULT now(),
							updated_at timestamptz NOT NULL DEFAULT now()
						);
						CREATE INDEX reservations_expiring ON reservations (expires_at) WHERE status = 'RESERVED';
						CREATE TABLE reservation_lines (
							order_id uuid NOT NULL REFERENCES reservations (order_id),
							product_id uuid NOT NULL REFERENCES products (id),
							quantity integer NOT NULL CHECK (quantity > 0),
							PRIMARY KEY (order_id, product_id)
						);
						CREATE TABLE stock_movements (
							id bigserial PRIMARY KEY,
							product_id uuid NOT NULL REFERENCES products (id),
							kind text NOT NULL CHECK (kind IN ('INITIAL', 'RESTOCK', 'COMMIT', 'RETURN')),
							quantity integer NOT NULL,
							order_id uuid,
							created_at timestamptz NOT NULL DEFAULT now()
						);`,
				},
			],
		}),
		EventsMixin({
			handlers: {
				// A batch of new orders reserved at once: their products locked once (sorted; Redlock in a cluster).
				"order.created": typedHandler<"order.created">({
					lock: event => event.data.items.map(i => productKey(i.productId)),
					async batch(events, { tx }) {
						await (this as InventoryThis).reserveMany(
							tx,
							events.map(e => ({ orderId: e.data.orderId, items: e.data.items, cause: e })),
							{ firstDelivery: true },
						);
					},
				}),
				"payment.authorized": typedHandler<"payment.authorized">({
					async batch(events, { tx }) {
						await (this as InventoryThis).commitMany(tx, events.map(e => ({ orderId: e.data.orderId, paymentId: e.data.paymentId, cause: e })));
					},
				}),
				"payment.failed": typedHandler<"payment.failed">(async function (event, { tx }) {
					await (this as InventoryThis).releaseIn(tx, event.data.orderId, "PAYMENT_FAILED", event);
				}),
				"order.cancelled": typedHandler<"order.cancelled">(async function (event, { tx }) {
					await (this as InventoryThis).releaseIn(tx, event.data.orderId, "CANCELLED", event);
				}),
			},
		}),
		RedlockMixin(),
	],

	actions: {
		/** The public catalogue: active products, filtered, sorted and paged. */
		list: {
			cache: { keys: ["category", "search", "minPrice", "maxPrice", "sort", "page", "pageSize"], ttl: 5, keygen: catalogueKeygen },
			params: {
				category: { type: "string", max: 100, optional: true },
				search: { type: "string", max: 200, optional: true },
				minPrice: { type: "number", integer: true, min: 0, max: MAX_PRICE, optional: true, convert: true },
				maxPrice: { type: "number", integer: true, min: 0, max: MAX_PRICE, optional: true, convert: true },
				sort: { type: "enum", values: Object.keys(SORTS), optional: true },
				...pageParams,
			},
			async handler(ctx: Context<{ category?: string; search?: string; minPrice?: number; maxPrice?: number; sort?: string; page: number; pageSize: number }>) {
				const p = ctx.params;
				const where = ["active"];
				if (p.category) where.push("category = :category");
				if (p.search) where.push("(name ILIKE :search OR description ILIKE :search OR sku ILIKE :search)");
				if (p.minPrice !== undefined) where.push("price >= :minPrice");
				if (p.maxPrice !== undefined) where.push("price <= :maxPrice");
				const replacements = { ...p, search: p.search ? `%${p.search.replace(/[\\%_]/g, c => `\\${c}`)}%` : undefined };
				return this.paged({ table: this.table("products"), where: where.join(" AND "), orderBy: SORTS[p.sort ?? "name"] }, replacements, p, (r: ProductRow) => {
					const { active, ...product } = toProduct(r); // every listed product is active
					return product;
				});
			},
		},

		/** The categories of the active products, by name, with how many each holds: the storefront's filter. */
		categories: {
			cache: { keys: ["page", "pageSize"], ttl: 5, keygen: catalogueKeygen },
			params: { ...pageParams },
			handler(ctx: Context<{ page: number; pageSize: number }>) {
				const table = `(SELECT category AS name, count(*) AS products FROM ${this.table("products")} WHERE active GROUP BY category) AS categories`;
				return this.paged({ table, orderBy: "name" }, {}, ctx.params, (r: { name: string; products: string }) => ({ name: r.name, products: Number(r.products) }));
			},
		},

		get: {
			cache: { keys: ["id"], ttl: 5, keygen: versionedKeygen((s: InventoryThis, p: { id: string }) => s.cacheVersions.of([p.id])) },
			params: { id: { type: "uuid" } },
			async handler(ctx: Context<{ id: string }>) {
				return toProduct(await this.productRow(ctx.params.id));
			},
		},

		/** What validation reads: price, state and availability of some products (cached until one of them changes). */
		availability: {
			cache: { keys: ["productIds"], ttl: 5, keygen: versionedKeygen((s: InventoryThis, p: { productIds: string[] }) => s.cacheVersions.of(p.productIds)) },
			params: { productIds: { type: "array", items: { type: "uuid" }, min: 1, max: 100 } },
			handler(ctx: Context<{ productIds: string[] }>): Promise<CatalogueEntry[]> {
				return this.availabilityReads.submit(ctx.params.productIds);
			},
		},

		create: {
			retryPolicy: { enabled: false },
			params: {
				sku: { type: "string", min: 1, max: 64, pattern: /^[A-Za-z0-9._-]+$/ },
				name: { type: "string", min: 1, max: 200, trim: true },
				description: { type: "string", max: 2000, optional: true, default: "" },
				category: { type: "string", min: 1, max: 100, trim: true },
				price: { type: "number", integer: true, min: 0, max: MAX_PRICE },
				currency: { type: "string", length: 3, uppercase: true, optional: true },
				imageUrl: { type: "url", optional: true },
				stock: { type: "number", integer: true, min: 0, max: 1_000_000 },
			},
			async handler(ctx: Context<{ sku: string; name: string; description: string; category: string; price: number; currency?: string; imageUrl?: string; stock: number }>) {
				const p = ctx.params;
				const currency = runtimeOf(this.broker).config.storeCurrency;
				if (p.currency && p.currency !== currency) throw new BusinessRuleError("CURRENCY_MISMATCH", `Prices are in the store currency ${currency}`, { currency: p.currency });
				const id = newId();
				try {
					const row = await this.transaction(async tx => {
						const [created] = await this.sql<ProductRow>(
							`INSERT INTO ${this.table("products")} (id, sku, name, description, category, price, currency, image_url, on_hand)
							 VALUES (:id, :sku, :name, :description, :category, :price, :currency, :imageUrl, :stock) RETURNING *`,
							{ ...p, id, currency, imageUrl: p.imageUrl ?? null },
							tx,
						);
						if (p.stock > 0) {
							await this.sql(`INSERT INTO ${this.table("stock_movements")} (product_id, kind, quantity) VALUES (:id, 'INITIAL', :stock)`, { id, stock: p.stock }, tx);
						}
						this.stockChanged([created], tx);
						return created;
					}, ctx);
					return toProduct(row);
				} catch (err) {
					if (isUniqueViolation(err)) throw new ConflictError("SKU_EXISTS", `A product with SKU ${p.sku} exists`, { sku: p.sku });
					throw err;
				}
			},
		},

		update: {
			params: {
				id: { type: "uuid" },
				name: { type: "string", min: 1, max: 200, trim: true, optional: true },
				description: { type: "string", max: 2000, optional: true },
				category: { type: "string", min: 1, max: 100, trim: true, optional: true },
				price: { type: "number", integer: true, min: 0, max: MAX_PRICE, optional: true },
				imageUrl: { type: "url", optional: true, nullable: true },
				active: { type: "boolean", optional: true },
			},
			async handler(ctx: Context<Record<string, any> & { id: string }>) {
				const columns: Record<string, string> = { name: "name", description: "description", category: "category", price: "price", imageUrl: "image_url", active: "active" };
				const changes = Object.keys(columns).filter(k => ctx.params[k] !== undefined);
				if (changes.length === 0) return toProduct(await this.productRow(ctx.params.id));
				const row = await this.transaction(async tx => {
					const [updated] = await this.sql<ProductRow>(
						`UPDATE ${this.table("products")} SET ${changes.map(k => `${columns[k]} = :${k}`).join(", ")}, updated_at = now() WHERE id = :id RETURNING *`,
						ctx.params,
						tx,
					);
					if (!updated) throw new NotFoundError("Product", { id: ctx.params.id });
					this.stockChanged([updated], tx);
					return updated;
				}, ctx);
				return toProduct(row);
			},
		},

		restock: {
			retryPolicy: { enabled: false }, // a retried restock would add the stock twice
			params: { productId: { type: "uuid" }, quantity: { type: "number", integer: true, min: 1, max: 1_000_000 } },
			async handler(ctx: Context<{ productId: string; quantity: number }>) {
				const { productId, quantity } = ctx.params;
				const row = await this.withLock([productKey(productId)], () =>
					this.transaction(async tx => {
						const [updated] = await this.sql<ProductRow>(
							`UPDATE ${this.table("products")} SET on_hand = on_hand + :quantity, updated_at = now() WHERE id = :productId RETURNING *`,
							{ productId, quantity },
							tx,
						);
						if (!updated) throw new NotFoundError("Product", { id: productId });
						await this.sql(`INSERT INTO ${this.table("stock_movements")} (product_id, kind, quantity) VALUES (:productId, 'RESTOCK', :quantity)`, { productId, quantity }, tx);
						this.stockChanged([updated], tx);
						return updated;
					}, ctx),
				);
				return toLevel(row);
			},
		},

		/** Stock levels of every product (admin), paged. */
		levels: {
			params: { ...pageParams },
			async handler(ctx: Context<{ page: number; pageSize: number }>) {
				return this.paged({ table: this.table("products"), orderBy: "sku" }, {}, ctx.params, toLevel);
			},
		},

		/** Operators: one product's levels (by id or SKU), its open reservations and latest stock movements. */
		stock: {
			params: { product: { type: "string", min: 1, max: 100 } },
			async handler(ctx: Context<{ product: string }>) {
				const byId = /^[0-9a-f-]{36}$/i.test(ctx.params.product);
				const [row] = await this.sql<ProductRow>(`SELECT * FROM ${this.table("products")} WHERE ${byId ? "id = :p::uuid" : "sku = :p"}`, { p: ctx.params.product });
				if (!row) throw new NotFoundError("Product", ctx.params);
				const reservations = await this.sql<{ order_id: string; quantity: number; expires_at: Date }>(
					`SELECT r.order_id, l.quantity, r.expires_at FROM ${this.table("reservations")} r JOIN ${this.table("reservation_lines")} l USING (order_id)
					 WHERE l.product_id = :id AND r.status = 'RESERVED' ORDER BY r.expires_at`,
					{ id: row.id },
				);
				const movements = await this.sql<{ kind: string; quantity: number; order_id: string | null; created_at: Date }>(
					`SELECT kind, quantity, order_id, created_at FROM ${this.table("stock_movements")} WHERE product_id = :id ORDER BY id DESC LIMIT 10`,
					{ id: row.id },
				);
				return {
					...toLevel(row),
					active: row.active,
					reservations: reservations.map(r => ({ orderId: r.order_id, quantity: r.quantity, expiresAt: new Date(r.expires_at).toISOString() })),
					movements: movements.map(m => ({ kind: m.kind, quantity: m.quantity, orderId: m.order_id ?? undefined, at: new Date(m.created_at).toISOString() })),
				};
			},
		},

		/** Reserves every line of an order or none; repeated for the same order, answers the same. */
		reserve: {
			params: { orderId: { type: "uuid" }, items: itemsRule },
			handler(ctx: Context<{ orderId: string; items: RequestedLine[] }>) {
				const { orderId, items } = ctx.params;
				return this.withLock(
					items.map(i => productKey(i.productId)),
					() => this.transaction(async tx => (await this.reserveMany(tx, [{ orderId, items }])).get(orderId)!, ctx),
				);
			},
		},

		commit: {
			params: { orderId: { type: "uuid" } },
			handler(ctx: Context<{ orderId: string }>) {
				return this.transaction(async tx => (await this.commitMany(tx, [{ orderId: ctx.params.orderId }])).get(ctx.params.orderId)!, ctx);
			},
		},

		release: {
			params: { orderId: { type: "uuid" }, reason: { type: "enum", values: ["PAYMENT_FAILED", "EXPIRED", "CANCELLED"] } },
			async handler(ctx: Context<{ orderId: string; reason: ReleaseReason }>) {
				return { status: await this.transaction(tx => this.releaseIn(tx, ctx.params.orderId, ctx.params.reason), ctx) };
			},
		},

		/** An order's reservation: status, expiry and lines (404 if the order never reached inventory). */
		reservation: {
			params: { orderId: { type: "uuid" } },
			async handler(ctx: Context<{ orderId: string }>) {
				const [r] = await this.sql<ReservationRow>(`SELECT * FROM ${this.table("reservations")} WHERE order_id = :orderId`, ctx.params);
				if (!r) throw new NotFoundError("Reservation", ctx.params);
				const lines = await this.sql<{ product_id: string; quantity: number }>(
					`SELECT product_id, quantity FROM ${this.table("reservation_lines")} WHERE order_id = :orderId ORDER BY product_id`,
					ctx.params,
				);
				return {
					orderId: r.order_id,
					status: r.status,
					expiresAt: new Date(r.expires_at).toISOString(),
					releaseReason: r.release_reason ?? undefined,
					shortages: r.shortages ?? undefined,
					items: lines.map(l => ({ productId: l.product_id, quantity: l.quantity })),
				};
			},
		},

		/** Loads the demo catalogue (products whose SKU is missing); returns how many it added. */
		seed: {
			retryPolicy: { enabled: false },
			handler() {
				return this.seedCatalogue();
			},
		},

		/** Releases the reservations past their expiry now (the sweep does it on a timer too). */
		releaseExpired: {
			handler() {
				return this.releaseExpired();
			},
		},
	},

	events: {
		/**
		 * A hint that some products changed: every inventory node stops reading their cached entries.
		 * A node of a version before the list (a rolling upgrade) sends none: then all of them.
		 */
		"inventory.cache.invalidated"(ctx: Context<{ productIds?: string[] } | undefined>) {
			if (ctx.nodeID !== this.broker.nodeID) this.cacheVersions.changed(ctx.params?.productIds);
		},
	},

	methods: {
		/** The availability of several requests' products, read with one SELECT; each request gets its own. */
		async readAvailability(groups: string[][]) {
			const rows = await this.sql<ProductRow>(`SELECT * FROM ${this.table("products")} WHERE id = ANY(ARRAY[:ids]::uuid[])`, { ids: [...new Set(groups.flat())] });
			const entries = new Map(rows.map(r => [r.id, toCatalogueEntry(r)]));
			return groups.map(ids => ids.flatMap(id => entries.get(id) ?? []));
		},

		ttlMs() {
			return runtimeOf(this.broker).config.reservationTtlMs;
		},


		async productRow(id: string) {
			const [row] = await this.sql<ProductRow>(`SELECT * FROM ${this.table("products")} WHERE id = :id`, { id });
			if (!row) throw new NotFoundError("Product", { id });
			return row;
		},

		/**
		 * The products' rows as this node wrote them last, if it is the cluster's only inventory node.
		 * With several, a hot product changes on each of them, so a remembered row would mostly fail
		 * its guard: they are read ahead instead.
		 */
		knownProductRows(ids: string[]) {
			return this.soleNode() ? this.knownProducts.take(ids) : undefined;
		},

		/**
		 * The products' rows to decide from, locked: `read` (in id order; remembered when it can be)
		 * for those this transaction has not changed yet, and `changed`, those it has (an earlier run
		 * of its batch), as it left them: stockChanged keeps them, and the transaction holds their locks.
		 */
		productsToDecide(ids: string[], tx: Transaction) {
			const latest = levelsChanged.get(tx);
			const rest = ids.filter(id => !latest?.has(id));
			return {
				read: { ...this.productsLock(rest), known: rest.length === 0 ? [] : this.knownProductRows(rest) },
				changed: ids.flatMap(id => latest?.get(id)?.row ?? []),
			};
		},

		/** Row locks in id order (the same order everywhere, so transactions never deadlock). */
		async lockProducts(ids: string[], tx: Transaction) {
			const [rows] = await this.sqlEach<[ProductRow[]]>([this.productsLock(ids)], tx);
			return byId(rows);
		},

		/** The products' rows, locked in id order (so concurrent lockers never deadlock). */
		productsLock(ids: string[]): LockedRead {
			return this.lockedRead("products", "id = ANY(ARRAY[:ids]::uuid[])", "id", { ids });
		},

		/**
		 * `stock.updated` for each product the transaction changed, once, with its level at the end
		 * (a batch that reserves one product for many orders announces one level, not one per order);
		 * cached reads dropped once the change is committed.
		 */
		stockChanged(rows: ProductRow[], tx: Transaction, cause?: DomainEvent) {
			let changed = levelsChanged.get(tx);
			if (!changed) {
				const latest = (changed = new Map());
				levelsChanged.set(tx, latest);
				beforeCommit(tx, async () => {
					levelsChanged.delete(tx);
					for (const { row: r, cause: c } of latest.values()) {
						this.publishEvent(tx, "stock.updated", { productId: r.id, onHand: r.on_hand, reserved: r.reserved, available: r.on_hand - r.reserved }, { key: r.id, causedBy: c, correlationId: c?.correlationId ?? r.id });
					}
				});
				tx.afterCommit(() => {
					const productIds = [...latest.keys()];
					// Here at once (no read on this node after the commit hits an old entry), then on the others.
					this.cacheVersions.changed(productIds);
					void this.broker.broadcast("inventory.cache.invalidated", { productIds });
				});
			}
			for (const row of rows) changed.set(row.id, { row, cause });
			// Remembered again only where the write returns its rows' versions (reserve and commit).
			this.knownProducts.forget(rows.map(r => r.id));
		},

		/** The orders' reservations, locked (in order id order). */
		async reservationsFor(orderIds: string[], tx: Transaction) {
			const [rows] = await this.sqlEach<[ReservationRow[]]>([this.reservationsLock(orderIds)], tx);
			return byOrder(rows);
		},

		reservationsLock(orderIds: string[]): LockedRead {
			return this.lockedRead("reservations", "order_id = ANY(ARRAY[:orderIds]::uuid[])", "order_id", { orderIds });
		},

		/**
		 * Reserves for many orders at once (a batch of order.created, or one re-driven order): the
		 * union of their products locked once, each order decided all or nothing in arrival order
		 * (allocate), then one statement each for the stock levels, the reservations and their lines,
		 * sent with the commit and the reads' guards: one message, after a read ahead when one is needed.
		 * An order reserved (or failed, or released) before answers as it did, and publishes nothing.
		 * On an order's first delivery it has no reservation yet, and the products' rows are those
		 * this node wrote last: nothing to read ahead (the guards check both; a redelivery fails its
		 * guard once and reads).
		 */
		async reserveMany(tx: Transaction, requests: Array<{ orderId: string; items: RequestedLine[]; cause?: DomainEvent }>, { firstDelivery = false } = {}) {
			const results = new Map<string, ReserveResult>();
			const orderIds = [...new Set(requests.map(r => r.orderId))];
			const productIds = [...new Set(requests.flatMap(r => r.items.map(i => i.productId)))];
			// An order reserved before locks its products needlessly: rare, and harmless.
			const products = this.productsToDecide(productIds, tx);
			const [reservations, read] = await this.sqlEach<[ReservationRow[], ProductRow[]]>(
				[{ ...this.reservationsLock(orderIds), known: firstDelivery ? this.firstReservations.noRowsYet(orderIds) : undefined }, products.read],
				tx,
			);
			const existing = byOrder(reservations);
			for (const [orderId, r] of existing) {
				if (r.status === "FAILED") results.set(orderId, { ok: false, reason: "OUT_OF_STOCK", lines: r.shortages ?? [] });
				else if (r.status === "RESERVED" || r.status === "COMMITTED") results.set(orderId, { ok: true, expiresAt: new Date(r.expires_at).toISOString() });
				else results.set(orderId, { ok: false, reason: "RELEASED" }); // cancelled before it was reserved, or already let go
			}
			const seen = new Set(existing.keys());
			const fresh = requests.filter(r => !seen.has(r.orderId) && seen.add(r.orderId)); // an order named twice is reserved once
			if (fresh.length === 0) return results;
			const rows = byId([...read, ...products.changed]);
			const levels = new Map<string, StockLevel>([...rows.values()].map(r => [r.id, { productId: r.id, onHand: r.on_hand, reserved: r.reserved, active: r.active }]));
			const { allocations, taken } = allocate(fresh.map(r => ({ orderId: r.orderId, lines: r.items })), levels);
			const expiresAt = new Date(Date.now() + this.ttlMs()).toISOString();
			for (const [i, { orderId, lines, shortages }] of allocations.entries()) {
				const opts = { causedBy: fresh[i].cause, correlationId: orderId, key: orderId };
				if (shortages.length > 0) {
					this.publishEvent(tx, "stock.failed", { orderId, reason: "OUT_OF_STOCK", lines: shortages }, opts);
					results.set(orderId, { ok: false, reason: "OUT_OF_STOCK", lines: shortages });
				} else {
					this.publishEvent(tx, "stock.reserved", { orderId, items: lines, expiresAt }, opts);
					results.set(orderId, { ok: true, expiresAt });
				}
			}
			if (taken.size > 0) {
				this.queueSql(
					`UPDATE ${this.table("products")} p SET reserved = p.reserved + l.quantity, updated_at = now()
					 FROM unnest(ARRAY[:ids]::uuid[], ARRAY[:quantities]::int[]) AS l(product_id, quantity) WHERE p.id = l.product_id
					 RETURNING p.*, ${WITH_ROW_VERSION}`,
					{ ids: [...taken.keys()], quantities: [...taken.values()] },
					tx,
					written => this.knownProducts.remember(written as ProductRow[], tx),
				);
				// The rows are locked: their new levels are known without reading them back.
				this.stockChanged([...taken].map(([id, quantity]) => ({ ...rows.get(id)!, reserved: rows.get(id)!.reserved + quantity })), tx, fresh[0].cause);
			}
			this.queueSql(
				`INSERT INTO ${this.table("reservations")} (order_id, status, expires_at, shortages)
				 SELECT * FROM unnest(ARRAY[:orderIds]::uuid[], ARRAY[:statuses]::text[], ARRAY[:expiresAt]::timestamptz[], ARRAY[:shortages]::jsonb[])
				 RETURNING *, ${WITH_ROW_VERSION}`,
				{
					orderIds: allocations.map(a => a.orderId),
					statuses: allocations.map(a => (a.shortages.length > 0 ? "FAILED" : "RESERVED")),
					expiresAt: allocations.map(() => expiresAt),
					shortages: allocations.map(a => (a.shortages.length > 0 ? JSON.stringify(a.shortages) : null)),
				},
				tx,
				written => this.knownReservations.remember(written as ReservationRow[], tx),
			);
			const reserved = allocations.filter(a => a.shortages.length === 0).flatMap(a => a.lines.map(l => ({ orderId: a.orderId, ...l })));
			if (reserved.length > 0) {
				this.queueSql(
					`INSERT INTO ${this.table("reservation_lines")} (order_id, product_id, quantity) SELECT * FROM unnest(ARRAY[:orderIds]::uuid[], ARRAY[:ids]::uuid[], ARRAY[:quantities]::int[])`,
					{ orderIds: reserved.map(l => l.orderId), ids: reserved.map(l => l.productId), quantities: reserved.map(l => l.quantity) },
					tx,
				);
			}
			tx.afterCommit(() => {
				for (const a of allocations) {
					countMetric(this.broker, "reservations", { outcome: a.shortages.length > 0 ? "OUT_OF_STOCK" : "RESERVED" });
					if (a.shortages.length === 0) {
						const lines = a.lines.map(l => ({ order_id: a.orderId, product_id: l.productId, quantity: l.quantity }));
						this.reservedLines.set(a.orderId, lines.sort((x, y) => (x.product_id < y.product_id ? -1 : 1)));
					}
				}
			});
			return results;
		},

		/**
		 * Commits the reservations of many paid orders at once: their lines' stock leaves (onHand and
		 * reserved down) with one statement each for the levels, the ledger and the reservations, sent
		 * with the commit and the reads' guards: one message, after a read ahead when one is needed.
		 * A reservation that expired meanwhile is released instead (the payment side refunds).
		 * Reservations this node made are not read ahead: their rows, lines and products are as it
		 * wrote them last.
		 */
		async commitMany(tx: Transaction, requests: CommitRequest[]) {
			const results = new Map<string, CommitResult>();
			const [reservationRows, lineRows, productRows] = await this.toCommit([...new Set(requests.map(r => r.orderId))].sort(), tx);
			const reservations = byOrder(reservationRows);
			let released = false;
			const now = new Date();
			const committing: CommitRequest[] = [];
			for (const { orderId, paymentId, cause } of requests) {
				const r = reservations.get(orderId);
				if (results.has(orderId)) continue;
				if (!r) results.set(orderId, { ok: false, reason: "NO_RESERVATION" });
				else if (r.status === "COMMITTED") results.set(orderId, { ok: true });
				else if (r.status === "RESERVED" && new Date(r.expires_at) <= now) {
					// Paid too late: the stock goes back now, and the payment side refunds.
					await this.releaseIn(tx, orderId, "EXPIRED", cause);
					released = true;
					results.set(orderId, { ok: false, reason: "RESERVATION_GONE" });
				} else if (r.status !== "RESERVED") results.set(orderId, { ok: false, reason: "RESERVATION_GONE" });
				else {
					committing.push({ orderId, paymentId, cause });
					results.set(orderId, { ok: true });
				}
			}
			if (committing.length === 0) return results;
			const orderIds = committing.map(c => c.orderId);
			const committed = new Set(orderIds);
			const lines = lineRows.filter(l => committed.has(l.order_id));
			const leaving = new Map<string, number>();
			for (const l of lines) leaving.set(l.product_id, (leaving.get(l.product_id) ?? 0) + l.quantity);
			// The rows are locked, so their new levels are known without reading them back (read again after a release above).
			const products = released ? await this.lockProducts([...leaving.keys()], tx) : byId(productRows);
			this.queueSql(
				`UPDATE ${this.table("products")} p SET on_hand = p.on_hand - l.quantity, reserved = p.reserved - l.quantity, updated_at = now()
				 FROM unnest(ARRAY[:ids]::uuid[], ARRAY[:quantities]::int[]) AS l(product_id, quantity) WHERE p.id = l.product_id
				 RETURNING p.*, ${WITH_ROW_VERSION}`,
				{ ids: [...leaving.keys()], quantities: [...leaving.values()] },
				tx,
				written => this.knownProducts.remember(written as ProductRow[], tx),
			);
			this.queueSql(
				`INSERT INTO ${this.table("stock_movements")} (product_id, kind, quantity, order_id) SELECT product_id, 'COMMIT', -quantity, order_id FROM ${this.table("reservation_lines")} WHERE order_id = ANY(ARRAY[:orderIds]::uuid[]) ORDER BY order_id, product_id`,
				{ orderIds },
				tx,
			);
			this.queueSql(`UPDATE ${this.table("reservations")} SET status = 'COMMITTED', updated_at = now() WHERE order_id = ANY(ARRAY[:orderIds]::uuid[])`, { orderIds }, tx);
			for (const { orderId, paymentId, cause } of committing) {
				const items = lines.filter(l => l.order_id === orderId).map(l => ({ productId: l.product_id, quantity: l.quantity }));
				this.publishEvent(tx, "stock.committed", { orderId, items, ...(paymentId ? { paymentId } : {}) }, { causedBy: cause, correlationId: orderId, key: orderId });
			}
			this.stockChanged(
				[...leaving].map(([id, quantity]) => {
					const row = products.get(id)!;
					return { ...row, on_hand: row.on_hand - quantity, reserved: row.reserved - quantity };
				}),
				tx,
				committing[0].cause,
			);
			return results;
		},

		/**
		 * What commitMany decides from, for orders sorted by id: their reservations, their lines (by
		 * order, then product) and their products, locked. One committed before locks its products
		 * needlessly (rare). Reservations this node made are taken as it wrote them, unread.
		 */
		async toCommit(orderIds: string[], tx: Transaction): Promise<[ReservationRow[], LineRow[], ProductRow[]]> {
			const reservations = { ...this.reservationsLock(orderIds), known: this.knownReservations.take(orderIds) };
			const known = orderIds.map(id => this.reservedLines.take(id));
			if (known.every(lines => lines !== undefined)) {
				const lines = (known as LineRow[][]).flat();
				const productIds = [...new Set(lines.map(l => l.product_id))];
				const products = this.productsToDecide(productIds, tx);
				const [reservationRows, productRows] = await this.sqlEach<[ReservationRow[], ProductRow[]]>([reservations, products.read], tx);
				return [reservationRows, lines, [...productRows, ...products.changed]];
			}
			return this.sqlEach<[ReservationRow[], LineRow[], ProductRow[]]>(
				[
					reservations,
					[`SELECT order_id, product_id, quantity FROM ${this.table("reservation_lines")} WHERE order_id = ANY(ARRAY[:orderIds]::uuid[]) ORDER BY order_id, product_id`, { orderIds }],
					this.lockedRead("products", `id IN (SELECT product_id FROM ${this.table("reservation_lines")} WHERE order_id = ANY(ARRAY[:orderIds]::uuid[]))`, "id", { orderIds }),
				],
				tx,
			);
		},

		async releaseIn(tx: Transaction, orderId: string, reason: ReleaseReason, cause?: DomainEvent): Promise<ReservationStatus> {
			this.knownReservations.forget([orderId]);
			const r = (await this.reservationsFor([orderId], tx)).get(orderId);
			if (!r) {
				// Released before it was reserved (e.g. cancelled first): a tombstone keeps a late reserve from taking stock.
				await this.sql(
					`INSERT INTO ${this.table("reservations")} (order_id, status, expires_at, release_reason) VALUES (:orderId, 'RELEASED', now(), :reason)`,
					{ orderId, reason },
					tx,
				);
				return "RELEASED";
			}
			const returning = r.status === "COMMITTED" && reason === "CANCELLED";
			if (r.status !== "RESERVED" && !returning) return r.status;
			const lines = await this.sql<{ product_id: string }>(`SELECT product_id FROM ${this.table("reservation_lines")} WHERE order_id = :orderId`, { orderId }, tx);
			await this.lockProducts(lines.map(l => l.product_id), tx);
			const updated = await this.sql<ProductRow>(
				returning
					? `UPDATE ${this.table("products")} p SET on_hand = p.on_hand + l.quantity, updated_at = now() FROM ${this.table("reservation_lines")} l WHERE l.order_id = :orderId AND p.id = l.product_id RETURNING p.*`
					: `UPDATE ${this.table("products")} p SET reserved = p.reserved - l.quantity, updated_at = now() FROM ${this.table("reservation_lines")} l WHERE l.order_id = :orderId AND p.id = l.product_id RETURNING p.*`,
				{ orderId },
				tx,
			);
			if (returning) {
				await this.sql(
					`INSERT INTO ${this.table("stock_movements")} (product_id, kind, quantity, order_id) SELECT product_id, 'RETURN', quantity, order_id FROM ${this.table("reservation_lines")} WHERE order_id = :orderId`,
					{ orderId },
					tx,
				);
			}
			const status: ReservationStatus = returning ? "RETURNED" : "RELEASED";
			await this.sql(`UPDATE ${this.table("reservations")} SET status = :status, release_reason = :reason, updated_at = now() WHERE order_id = :orderId`, { orderId, status, reason }, tx);
			this.publishEvent(tx, "stock.released", { orderId, reason }, { causedBy: cause, correlationId: orderId, key: orderId });
			this.stockChanged(updated, tx, cause);
			return status;
		},

		/** Each expired reservation in its own transaction (skipping ones another node is releasing). */
		async releaseExpired() {
			const due = await this.sql<{ order_id: string }>(
				`SELECT order_id FROM ${this.table("reservations")} WHERE status = 'RESERVED' AND expires_at <= now() ORDER BY expires_at LIMIT 100`,
			);
			let released = 0;
			for (const { order_id: orderId } of due) {
				const done = await this.transaction(async tx => {
					const [still] = await this.sql(
						`SELECT 1 FROM ${this.table("reservations")} WHERE order_id = :orderId AND status = 'RESERVED' AND expires_at <= now() FOR UPDATE SKIP LOCKED`,
						{ orderId },
						tx,
					);
					if (!still) return false;
					await this.releaseIn(tx, orderId, "EXPIRED");
					return true;
				});
				if (done) released++;
			}
			return released;
		},

		async seedCatalogue() {
			const currency = runtimeOf(this.broker).config.storeCurrency;
			let added = 0;
			await this.transaction(async tx => {
				for (const p of DEMO_CATALOGUE) {
					const [row] = await this.sql<ProductRow>(
						`INSERT INTO ${this.table("products")} (id, sku, name, description, category, price, currency, on_hand)
						 VALUES (:id, :sku, :name, :description, :category, :price, :currency, :stock) ON CONFLICT (sku) DO NOTHING RETURNING *`,
						{ ...p, id: newId(), currency },
						tx,
					);
					if (!row) continue;
					added++;
					await this.sql(`INSERT INTO ${this.table("stock_movements")} (product_id, kind, quantity) VALUES (:id, 'INITIAL', :stock)`, { id: row.id, stock: p.stock }, tx);
					this.stockChanged([row], tx);
				}
			});
			return added;
		},
	},

	created() {
		this.cacheVersions = new CacheVersions();
		this.knownProducts = new KnownRows<ProductRow>(row => row.id, KNOWN_ROWS_MAX, KNOWN_ROWS_TTL_MS);
		this.knownReservations = new KnownRows<ReservationRow>(row => row.order_id, KNOWN_ROWS_MAX, KNOWN_ROWS_TTL_MS);
		this.reservedLines = new RecentMap(KNOWN_ROWS_MAX, KNOWN_ROWS_TTL_MS);
		this.firstReservations = new FirstTries(KNOWN_ROWS_MAX, KNOWN_ROWS_TTL_MS);
		this.availabilityReads = new GroupCommit(groups => this.readAvailability(groups), runtimeOf(this.broker).config.eventBatchMax);
	},

	async started() {
		const { config } = runtimeOf(this.broker);
		// The embedded default starts with something to buy; a cluster is seeded with `npm run seed`.
		if (!config.databaseUrl) {
			const [{ n }] = await this.sql<{ n: string }>(`SELECT count(*) AS n FROM ${this.table("products")}`);
			if (Number(n) === 0) this.logger.info(`Loaded ${await this.seedCatalogue()} demo products.`);
		}
		if (config.reservationSweepMs === 0) return;
		this.sweep = runEvery(
			config.reservationSweepMs,
			async () => {
				const n = await this.releaseExpired();
				if (n > 0) this.logger.info(`Released ${n} expired reservation(s).`);
			},
			this.logger,
			"Reservation expiry sweep",
		);
	},

	async stopped() {
		await this.sweep?.stop();
	},
};

export default InventoryService;
