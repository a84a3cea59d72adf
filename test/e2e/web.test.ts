/**
 * The storefront and the operations console in a real browser (Debian's Chromium driven by
 * playwright-core) against an embedded node serving the built web front: browsing and filtering, a
 * wallet checkout followed live to CONFIRMED, a hosted card payment through the mock gateway's page
 * and the success page, a declined card's reason, an admin's dispatch earning the customer a
 * voucher, an operator replaying a dead letter, phone width and keyboard use, and an axe-core scan
 * of every page. Screenshots for the README are written to docs/screenshots.
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { eventually, freePort, startTestNode, tempDir, type TestNode } from "../../scripts/harness/node";
import { http, tokenFor } from "../../scripts/harness/http";
import { SCREENSHOTS, launch, seriousViolations } from "./browser";

const data = tempDir();
let node: TestNode;
let base: string;
let browser: Browser;
const contexts: BrowserContext[] = [];
/** Console errors of every page (a CSP refusal shows there). */
const consoleErrors: string[] = [];
const admin = tokenFor("e2e-admin", "admin");
const LAMP = `E2E Lamp ${randomUUID().slice(0, 4)}`;
const DESK = `E2E Desk ${randomUUID().slice(0, 4)}`;
let deskId = "";
/** Orders placed along the way, for the pages scanned at the end. */
const placed: Record<string, string> = {};

async function newPage(viewport = { width: 1280, height: 900 }): Promise<Page> {
	const context = await browser.newContext({ viewport });
	contexts.push(context);
	const page = await context.newPage();
	page.on("console", m => m.type() === "error" && consoleErrors.push(`${page.url()}: ${m.text()}`));
	return page;
}
const shot = (page: Page, name: string) => page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: false });
const heading = (page: Page, text: string | RegExp) => page.getByRole("heading", { level: 1, name: text }).waitFor();
const badge = (page: Page, status: string) => page.locator("main .badge", { hasText: new RegExp(`^${status}$`) }).first().waitFor({ timeout: 30000 });

async function signIn(page: Page, name: string, role: "customer" | "admin" = "customer") {
	await page.goto(`${base}/#/signin`);
	await page.getByLabel("User name").fill(name);
	await page.getByLabel(role === "admin" ? "Admin" : "Customer", { exact: true }).check();
	await page.getByRole("button", { name: "Sign in", exact: true }).click();
	await page.getByRole("button", { name: "Sign out" }).waitFor();
}

/** Tops up an empty wallet on the wallet page by `euros`, and waits for the new balance. */
async function topUp(page: Page, euros: number) {
	await page.goto(`${base}/#/wallet`);
	await page.getByLabel("Amount").fill(euros.toFixed(2));
	await page.getByRole("button", { name: "Top up" }).click();
	await page.getByText(new RegExp(`Balance\\s+€?${euros}[.,]00`)).waitFor();
}

/** From the catalogue to the payment step: search, add, check the cart, address, review. */
async function toPayment(page: Page, product: string) {
	await page.goto(`${base}/#/`);
	await page.getByLabel("Search").fill(product);
	await page.getByRole("button", { name: "Filter" }).click();
	await page.getByRole("button", { name: `Add to cart: ${product}` }).click();
	await page.getByRole("link", { name: /^Cart/ }).click();
	await page.getByRole("button", { name: "Checkout" }).click();
	await heading(page, "Checkout");
	await page.getByLabel("Full name").fill("Ada Lovelace");
	await page.getByLabel("Address", { exact: true }).fill("1 Main St");
	await page.getByLabel("City").fill("Berlin");
	await page.getByLabel("Postal code").fill("10115");
	await page.getByRole("button", { name: "Review the order" }).click();
	await page.getByRole("button", { name: "Continue to payment" }).click();
}
/** The order id of the tracking page the checkout landed on. */
async function trackedOrder(page: Page): Promise<string> {
	await page.waitForURL(/#\/orders\/[0-9a-f-]{36}/);
	return /#\/orders\/([0-9a-f-]{36})/.exec(page.url())![1];
}

beforeAll(async () => {
	const port = await freePort();
	node = await startTestNode({ DATA_DIR: data.dir, PORT: String(port), RATE_LIMIT: "100000", EVENT_MAX_ATTEMPTS: "2", SAGA_STEP_TIMEOUT_MS: "10000" });
	base = node.url;
	browser = await launch();
	for (const [name, price] of [
		[LAMP, 2500],
		[DESK, 15000],
	] as const) {
		const res = await http(base, "POST", "/api/products", { token: admin, body: { sku: `E2E-${randomUUID().slice(0, 8)}`, name, category: "e2e", price, stock: 50, description: "Made for the browser tests." } });
		expect(res.status).toBe(201);
		if (name === DESK) deskId = res.body.id;
	}
});
afterAll(async () => {
	for (const c of contexts) await c.close().catch(() => undefined);
	await browser?.close();
	await node?.stop();
	data.remove();
});

describe("the storefront", () => {
	let page: Page;
	beforeAll(async () => {
		page = await newPage();
		await signIn(page, "e2e-ada");
	});

	it("browses and filters the catalogue", async () => {
		await page.goto(`${base}/#/`);
		await heading(page, "Shop");
		await page.locator(".product").first().waitFor();
		// Every category of the catalogue, with its count (GET /api/categories), not just the first page's.
		expect(await page.locator('select option[value="books"]').textContent()).toMatch(/^books \(\d+\)$/);
		await page.getByLabel("Category").selectOption("books");
		await page.getByRole("button", { name: "Filter" }).click();
		await page.waitForFunction(() => Array.from((globalThis as any).document.querySelectorAll(".product .muted") as Array<{ textContent: string }>).every(e => e.textContent === "books"));
		expect(await page.locator(".product").count()).toBeGreaterThan(0);
		await page.getByLabel("Category").selectOption("");
		await page.getByLabel("Search").fill(LAMP);
		await page.getByRole("button", { name: "Filter" }).click();
		await page.getByRole("link", { name: LAMP }).waitFor();
		expect(await page.locator(".product").count()).toBe(1);
		await page.getByLabel("Search").fill("");
		await page.getByLabel("Category").selectOption("");
		await page.getByRole("button", { name: "Filter" }).click();
		await page.locator(".product").nth(2).waitFor();
		await shot(page, "catalogue");
		await page.getByRole("link", { name: LAMP }).first().click().catch(async () => page.goto(`${base}/#/`));
	});

	it("tops up the wallet and pays a checkout from it, the tracking page reaching CONFIRMED without a reload", async () => {
		await topUp(page, 500);
		await toPayment(page, LAMP);
		await page.getByLabel("Wallet balance").check();
		await shot(page, "checkout-payment");
		await page.getByRole("button", { name: "Place order" }).click();
		const id = await trackedOrder(page);
		placed.wallet = id;
		await page.evaluate(() => ((globalThis as any).marker = "same document"));
		await badge(page, "confirmed");
		expect(await page.evaluate(() => (globalThis as any).marker)).toBe("same document"); // no reload: the stream moved it
		await page.getByText("Thank you: your order is placed").waitFor();
		await shot(page, "order-tracking");
	});

	it("pays on the mock gateway's hosted page and comes back to the success page, which verifies the session", async () => {
		await toPayment(page, LAMP);
		await page.getByLabel("Card on the payment provider's page").check();
		await page.getByRole("button", { name: "Place order and pay" }).click();
		await page.waitForURL(/\/checkout\/cs_[0-9a-f]+$/);
		await page.getByLabel(/Visa 4242/).check();
		await shot(page, "hosted-payment-page");
		await page.getByRole("button", { name: /^Pay / }).click();
		await page.waitForURL(/#\/paid\?session=cs_/);
		await page.getByText(/Paid .* Thank you!/).waitFor();
		await page.getByRole("link", { name: "Follow the order" }).click();
		placed.hosted = await trackedOrder(page);
		await badge(page, "confirmed");
	});

	it("shows a declined card's reason on the order", async () => {
		await toPayment(page, LAMP);
		await page.getByLabel("Card (test token)").check();
		await page.getByLabel("Test card").selectOption("tok_chargeDeclined");
		await page.getByRole("button", { name: "Place order" }).click();
		placed.declined = await trackedOrder(page);
		await badge(page, "payment failed");
		await page.getByRole("alert").filter({ hasText: /Payment failed: .*card_declined/ }).waitFor();
	});

	it("shows field errors next to their fields and keeps the customer on the step", async () => {
		await toPayment(page, LAMP);
		await page.getByRole("button", { name: "Back" }).click();
		await page.getByRole("button", { name: "Back" }).click();
		await page.getByLabel("Country (2 letters, e.g. DE)").fill("D");
		await page.getByRole("button", { name: "Review the order" }).click();
		await page.getByRole("button", { name: "Continue to payment" }).click();
		await page.getByRole("button", { name: "Place order" }).click();
		await page.locator("#ship-country-error").waitFor();
		expect(await page.getByLabel("Country (2 letters, e.g. DE)").getAttribute("aria-invalid")).toBe("true");
		await page.getByRole("alert").filter({ hasText: "Some fields need a change." }).waitFor();
	});

	it("works at phone width, by keyboard", async () => {
		const phone = await newPage({ width: 390, height: 844 });
		await phone.goto(`${base}/#/signin`);
		await phone.getByLabel("User name").focus();
		await phone.keyboard.type("e2e-phone");
		await phone.keyboard.press("Enter"); // submits the form: signed in
		await phone.getByRole("button", { name: "Sign out" }).waitFor();
		await phone.goto(`${base}/#/`);
		await phone.reload(); // a fresh load: the keyboard starts at the top
		await phone.locator(".product").first().waitFor();
		expect(await phone.evaluate(() => (globalThis as any).document.documentElement.scrollWidth <= (globalThis as any).innerWidth)).toBe(true);
		await phone.keyboard.press("Tab"); // the first stop is the skip link
		expect(await phone.evaluate(() => (globalThis as any).document.activeElement?.textContent)).toBe("Skip to content");
		await shot(phone, "phone-catalogue");
	});
});

describe("the operations console", () => {
	let customer: Page;
	let ops: Page;
	beforeAll(async () => {
		customer = await newPage();
		await signIn(customer, "e2e-grace");
		ops = await newPage();
		await signIn(ops, "e2e-ops", "admin");
	});

	it("dispatches an order over 100.00, and the customer's notifications show the voucher", async () => {
		await topUp(customer, 200);
		await toPayment(customer, DESK);
		await customer.getByLabel("Wallet balance").check();
		await customer.getByRole("button", { name: "Place order" }).click();
		const id = await trackedOrder(customer);
		placed.desk = id;
		await badge(customer, "confirmed");

		await ops.goto(`${base}/#/admin/orders/${id}`);
		await ops.getByLabel("Tracking number").fill("JD0001");
		await ops.getByRole("button", { name: "Dispatch" }).click();
		await badge(ops, "dispatched");
		await ops.getByText("order.dispatched").waitFor();

		await customer.goto(`${base}/#/notifications`);
		await eventually("the voucher notification", async () => {
			await customer.reload();
			return (await customer.getByRole("heading", { name: /A voucher for you/ }).count()) > 0;
		});
		await customer.locator("header .count").last().waitFor();
		await shot(customer, "notifications");
		await customer.getByRole("button", { name: "Mark as read: A voucher for you" }).click();
		await customer.goto(`${base}/#/vouchers`);
		await customer.getByText(/VCH-/).waitFor();
	});

	it("shows the dashboard's figures and charts, and inventory", async () => {
		await ops.goto(`${base}/#/admin`);
		await ops.getByRole("img", { name: /Orders by status/ }).waitFor();
		await ops.getByText("Average order").waitFor();
		await shot(ops, "console-dashboard");
		await ops.goto(`${base}/#/admin/inventory`);
		await ops.getByRole("button", { name: `Restock` }).first().waitFor();
		await ops.getByLabel(`Units to add to ${DESK}`).fill("5");
		await ops.getByRole("row", { name: new RegExp(DESK) }).getByRole("button", { name: "Restock" }).click();
		await ops.getByText("Restocked 5.").waitFor();
		const level = await http(base, "GET", `/api/products/${deskId}`);
		expect(level.body.available).toBe(50 - 1 + 5);
	});

	it("sees a dead letter and replays it", async () => {
		// A voucher.issued event the notification service cannot store (no user): dead-lettered after its tries.
		const envelope = {
			eventId: randomUUID(),
			eventName: "voucher.issued",
			version: 1,
			occurredAt: new Date().toISOString(),
			correlationId: null,
			causationId: null,
			producer: { service: "voucher", nodeID: "e2e" },
			data: { voucherId: randomUUID(), code: "VCH-POISON", userId: null, orderId: randomUUID(), amount: 500, currency: "EUR" },
		};
		node.broker.emit("voucher.issued", envelope, { groups: ["notification"] });
		await eventually("the dead letter", async () => (await node.broker.call<{ total: number }, Record<string, unknown>>("notification.deadLetters", { pending: true })).total > 0);
		await ops.goto(`${base}/#/admin/operations`);
		await ops.getByRole("cell", { name: "voucher.issued" }).waitFor();
		await ops.getByRole("heading", { name: "Nodes" }).waitFor();
		await shot(ops, "console-operations");
		await ops.getByRole("button", { name: /^Replay notification dead letter/ }).first().click();
		await ops.getByText(/Replayed notification #\d+: dead-lettered\./).waitFor(); // the same fault: a new dead letter, the old one replayed
	});
});

describe("accessibility and the page's policy", () => {
	it("has no serious or critical axe-core violations on any page", async () => {
		const customer = await newPage();
		await signIn(customer, "e2e-ada");
		const ops = await newPage();
		await signIn(ops, "e2e-ops", "admin");
		const anon = await newPage();
		const sessionId = (await http(base, "GET", `/api/orders/${placed.hosted}`, { token: tokenFor("e2e-ada") })).body.payment.sessionId;
		const pages: Array<[Page, string]> = [
			[anon, "/"],
			[anon, "/signin"],
			[anon, `/products/${deskId}`],
			[customer, "/cart"],
			[customer, "/orders"],
			[customer, `/orders/${placed.wallet}`],
			[customer, `/orders/${placed.declined}`],
			[customer, `/paid?session=${sessionId}`],
			[customer, "/notifications"],
			[customer, "/wallet"],
			[customer, "/vouchers"],
			[ops, "/admin"],
			[ops, "/admin/inventory"],
			[ops, "/admin/orders"],
			[ops, `/admin/orders/${placed.desk}`],
			[ops, "/admin/promotions"],
			[ops, "/admin/operations"],
		];
		const found: string[] = [];
		for (const [page, route] of pages) {
			await page.goto(`${base}/#${route}`);
			await page.locator("main h1").first().waitFor();
			await page.waitForLoadState("networkidle").catch(() => undefined);
			for (const v of await seriousViolations(page)) found.push(`${route}: ${v}`);
		}
		// The checkout's steps, with something in the cart.
		await customer.goto(`${base}/#/`);
		await toPayment(customer, LAMP);
		for (const v of await seriousViolations(customer)) found.push(`/checkout: ${v}`);
		expect(found).toEqual([]);
	});

	it("ran under its Content-Security-Policy without a refusal or a script error", () => {
		expect(consoleErrors.filter(e => !/status of 4\d\d|402|409/.test(e))).toEqual([]);
	});
});
