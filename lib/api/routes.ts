import type { IncomingHttpHeaders } from "node:http";
import type { ApiUser } from "./auth";
import { newId } from "../ids";

/** Who may call a route: anyone, any signed-in user (customer or admin), or admins only. */
export type Access = "public" | "user" | "admin";

export interface RequestParts {
	body: Record<string, unknown>;
	query: Record<string, unknown>;
	params: Record<string, string>;
	headers: IncomingHttpHeaders;
	user?: ApiUser;
}

export interface ApiRoute {
	method: "GET" | "POST" | "PUT" | "PATCH";
	/** Under /api, in moleculer-web's syntax (`:id`). */
	path: string;
	/** The action it calls, or a gateway handler for what is not one action call. */
	action: string;
	access: Access;
	summary: string;
	tag: string;
	/** Success status (default 200). */
	status?: number;
	/** The body fields it accepts; they pass to the action under the same names. */
	body?: string[];
	/** The query parameters it accepts. */
	query?: string[];
	/** Request headers it reads. */
	headers?: string[];
	/** The response body's schema in the OpenAPI components. */
	response?: string;
	/** Builds the action's params from the request: only what is listed ever reaches a service. */
	params: (r: RequestParts) => Record<string, unknown>;
}

const pick = (from: Record<string, unknown>, keys: readonly string[]) =>
	Object.fromEntries(keys.filter(k => from[k] !== undefined).map(k => [k, from[k]]));

/** A customer acts on their own resources; an admin on anyone's (no owner filter). */
const owner = (user?: ApiUser) => (user?.role === "admin" ? undefined : user?.sub);
const idempotencyKey = (headers: IncomingHttpHeaders) => {
	const key = headers["idempotency-key"];
	return typeof key === "string" && key.length > 0 ? key : undefined;
};

const PAGE = ["page", "pageSize"];
const PRODUCT_QUERY = ["category", "search", "minPrice", "maxPrice", "sort", ...PAGE];
const PRODUCT_BODY = ["sku", "name", "description", "category", "price", "currency", "imageUrl", "stock"];
const PRODUCT_PATCH = ["name", "description", "category", "price", "imageUrl", "active"];
const ORDER_BODY = ["items", "promoCodes", "voucherCodes", "shippingAddress", "customer", "payment"];
const PAYMENT_BODY = ["method", "cardToken"];
const SESSION_BODY = ["successUrl", "cancelUrl"];
const PROMOTION_BODY = ["code", "type", "value", "minSubtotal", "startsAt", "endsAt", "maxRedemptions"];

/** Every route under /api: SPEC section 4's and those the README names beyond it; nothing else is published. */
export const API_ROUTES: ApiRoute[] = [
	// Catalogue and inventory
	{ method: "GET", path: "/products", action: "inventory.list", access: "public", tag: "Catalogue", summary: "List active products", query: PRODUCT_QUERY, response: "ProductPage", params: r => pick(r.query, PRODUCT_QUERY) },
	{ method: "GET", path: "/categories", action: "inventory.categories", access: "public", tag: "Catalogue", summary: "The active products' categories, with their product counts", query: PAGE, response: "CategoryPage", params: r => pick(r.query, PAGE) },
	{ method: "GET", path: "/products/:id", action: "inventory.get", access: "public", tag: "Catalogue", summary: "One product", response: "Product", params: r => ({ id: r.params.id }) },
	{ method: "POST", path: "/products", action: "inventory.create", access: "admin", tag: "Catalogue", summary: "Create a product", status: 201, body: PRODUCT_BODY, response: "Product", params: r => pick(r.body, PRODUCT_BODY) },
	{ method: "PATCH", path: "/products/:id", action: "inventory.update", access: "admin", tag: "Catalogue", summary: "Change a product", body: PRODUCT_PATCH, response: "Product", params: r => ({ ...pick(r.body, PRODUCT_PATCH), id: r.params.id }) },
	{ method: "POST", path: "/inventory/:productId/restock", action: "inventory.restock", access: "admin", tag: "Catalogue", summary: "Add stock", body: ["quantity"], response: "StockLevel", params: r => ({ quantity: r.body.quantity, productId: r.params.productId }) },
	{ method: "GET", path: "/inventory", action: "inventory.levels", access: "admin", tag: "Catalogue", summary: "Stock levels", query: PAGE, response: "StockLevelPage", params: r => pick(r.query, PAGE) },

	// Cart
	{ method: "POST", path: "/cart/validate", action: "validation.validate", access: "user", tag: "Cart", summary: "Validate a cart", body: ["items", "promoCodes", "voucherCodes"], response: "CartValidation", params: r => ({ ...pick(r.body, ["items", "promoCodes", "voucherCodes"]), userId: r.user!.sub }) },

	// Orders
	{
		method: "POST",
		path: "/orders",
		action: "order.create",
		access: "user",
		tag: "Orders",
		summary: "Place an order",
		status: 201,
		body: ORDER_BODY,
		headers: ["Idempotency-Key"],
		response: "Order",
		params: r => ({ ...pick(r.body, ORDER_BODY), userId: r.user!.sub, idempotencyKey: idempotencyKey(r.headers) }),
	},
	{ method: "GET", path: "/orders", action: "order.list", access: "user", tag: "Orders", summary: "My orders (admin: all, ?userId=)", query: ["status", "userId", ...PAGE], response: "OrderPage", params: r => ({ ...pick(r.query, ["status", ...PAGE]), userId: owner(r.user) ?? r.query.userId }) },
	{ method: "GET", path: "/orders/:id", action: "order.get", access: "user", tag: "Orders", summary: "One order", response: "Order", params: r => ({ orderId: r.params.id, userId: owner(r.user) }) },
	{ method: "POST", path: "/orders/:id/process-payment", action: "order.processPayment", access: "user", tag: "Orders", summary: "Pay an order waiting in PAYMENT_PENDING", body: PAYMENT_BODY, response: "PaymentResult", params: r => ({ ...pick(r.body, PAYMENT_BODY), orderId: r.params.id, userId: owner(r.user) }) },
	{
		method: "POST",
		path: "/orders/:id/payment-session",
		action: "order.createPaymentSession",
		access: "user",
		tag: "Orders",
		summary: "Pay on the gateway's hosted page: a payment session (the open one if any)",
		status: 201,
		body: SESSION_BODY,
		response: "PaymentSession",
		params: r => ({ ...pick(r.body, SESSION_BODY), orderId: r.params.id, userId: owner(r.user) }),
	},
	{ method: "POST", path: "/payment-sessions/:sessionId/verify", action: "payment.verifySession", access: "user", tag: "Orders", summary: "Apply a hosted session's outcome (the success page)", response: "PaymentSession", params: r => ({ sessionId: r.params.sessionId, userId: owner(r.user) }) },
	{ method: "POST", path: "/orders/:id/cancel", action: "order.cancel", access: "user", tag: "Orders", summary: "Cancel before dispatch", body: ["reason"], response: "Order", params: r => ({ ...pick(r.body, ["reason"]), orderId: r.params.id, userId: owner(r.user) }) },
	{ method: "POST", path: "/orders/:id/dispatch", action: "order.dispatch", access: "admin", tag: "Orders", summary: "Send an order", body: ["courier", "trackingNumber"], response: "Order", params: r => ({ ...pick(r.body, ["courier", "trackingNumber"]), orderId: r.params.id }) },
	{ method: "POST", path: "/orders/:id/deliver", action: "order.deliver", access: "admin", tag: "Orders", summary: "Mark an order delivered", response: "Order", params: r => ({ orderId: r.params.id }) },
	{ method: "GET", path: "/orders/:id/stream", action: "gateway.orderStream", access: "user", tag: "Orders", summary: "Follow an order live (Server-Sent Events)", query: ["access_token"], response: "EventStream", params: r => ({ orderId: r.params.id, userId: owner(r.user) }) },
	{ method: "GET", path: "/orders/:id/timeline", action: "gateway.orderTimeline", access: "user", tag: "Orders", summary: "An order's domain events", response: "Timeline", params: r => ({ orderId: r.params.id, userId: owner(r.user) }) },

	// Wallet
	{ method: "GET", path: "/wallet", action: "wallet.get", access: "user", tag: "Wallet", summary: "My wallet", response: "Wallet", params: r => ({ userId: r.user!.sub }) },
	{
		method: "POST",
		path: "/wallet/top-ups",
		action: "payment.topUp",
		access: "user",
		tag: "Wallet",
		summary: "Top up my wallet by card",
		body: ["amount", "cardToken"],
		headers: ["Idempotency-Key"],
		response: "Wallet",
		// Without a key every request is its own top-up.
		params: r => ({ ...pick(r.body, ["amount", "cardToken"]), userId: r.user!.sub, idempotencyKey: idempotencyKey(r.headers) ?? newId() }),
	},
	{ method: "GET", path: "/wallet/transactions", action: "wallet.transactions", access: "user", tag: "Wallet", summary: "My wallet's ledger", query: PAGE, response: "LedgerPage", params: r => ({ ...pick(r.query, PAGE), userId: r.user!.sub }) },
	{ method: "POST", path: "/admin/wallets/:userId/adjustments", action: "wallet.adjust", access: "admin", tag: "Wallet", summary: "Adjust a wallet", body: ["amount", "reason"], response: "Wallet", params: r => ({ ...pick(r.body, ["amount", "reason"]), userId: r.params.userId }) },

	// Vouchers, notifications, analytics, promotions
	{ method: "GET", path: "/vouchers", action: "voucher.list", access: "user", tag: "Vouchers", summary: "My vouchers", query: PAGE, response: "VoucherPage", params: r => ({ ...pick(r.query, PAGE), userId: r.user!.sub }) },
	{
		method: "GET",
		path: "/notifications",
		action: "notification.list",
		access: "user",
		tag: "Notifications",
		summary: "My notifications",
		query: ["unread", ...PAGE],
		response: "NotificationPage",
		params: r => ({ ...pick(r.query, ["unread", ...PAGE]), userId: r.user!.sub, includeAdmin: r.user!.role === "admin" }),
	},
	{ method: "PUT", path: "/notifications/:id/read", action: "notification.markRead", access: "user", tag: "Notifications", summary: "Mark a notification read", response: "Notification", params: r => ({ id: r.params.id, userId: r.user!.sub, includeAdmin: r.user!.role === "admin" }) },
	{ method: "GET", path: "/analytics/orders", action: "order.analytics", access: "admin", tag: "Analytics", summary: "Order figures", response: "Analytics", params: () => ({}) },
	{ method: "POST", path: "/promotions", action: "validation.createPromotion", access: "admin", tag: "Promotions", summary: "Create a promotion", status: 201, body: PROMOTION_BODY, response: "Promotion", params: r => pick(r.body, PROMOTION_BODY) },
	{ method: "GET", path: "/promotions", action: "validation.listPromotions", access: "admin", tag: "Promotions", summary: "Promotions", query: PAGE, response: "PromotionPage", params: r => pick(r.query, PAGE) },

	// The operations console: what the REPL shows (beyond SPEC's list)
	{ method: "GET", path: "/admin/nodes", action: "gateway.adminNodes", access: "admin", tag: "Operations", summary: "Every node's readiness and services", response: "NodeList", params: () => ({}) },
	{ method: "GET", path: "/admin/stuck-orders", action: "order.stuck", access: "admin", tag: "Operations", summary: "Orders past their step's deadline (or idle that long before dispatch)", query: ["olderThanSeconds"], response: "StuckOrders", params: r => pick(r.query, ["olderThanSeconds"]) },
	{ method: "GET", path: "/admin/dead-letters", action: "gateway.adminDeadLetters", access: "admin", tag: "Operations", summary: "Events a service could not handle, not replayed yet", response: "DeadLetters", params: () => ({}) },
	{
		method: "POST",
		path: "/admin/dead-letters/:service/:letterId/replay",
		action: "gateway.adminReplay",
		access: "admin",
		tag: "Operations",
		summary: "Hand a dead letter to its service's handler again",
		response: "ReplayResult",
		params: r => ({ service: r.params.service, id: r.params.letterId }),
	},
	{ method: "GET", path: "/admin/outbox", action: "gateway.adminOutbox", access: "admin", tag: "Operations", summary: "Events written but not yet published, per service", response: "OutboxBacklog", params: () => ({}) },

	// Development sign-in: answers only outside production while the development JWT secret is in use
	{ method: "POST", path: "/dev/token", action: "gateway.devToken", access: "public", tag: "Operations", summary: "Development sign-in: a token for a user name and role", body: ["sub", "role"], response: "DevToken", params: r => pick(r.body, ["sub", "role"]) },
];

export const routeKey = (method: string, path: string) => `${method.toUpperCase()} ${path}`;
export const ROUTES_BY_KEY = new Map(API_ROUTES.map(r => [routeKey(r.method, r.path), r]));
