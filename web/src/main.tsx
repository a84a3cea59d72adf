import { render } from "preact";
import { useEffect } from "preact/hooks";
import "./styles.css";
import { session } from "./session";
import { refreshUnread, unread } from "./unread";
import { cartCount } from "./cart";
import { match, route } from "./router";
import { SignIn } from "./pages/SignIn";
import { Catalogue } from "./pages/Catalogue";
import { ProductPage } from "./pages/Product";
import { CartPage } from "./pages/Cart";
import { Checkout } from "./pages/Checkout";
import { PaymentReturn } from "./pages/PaymentReturn";
import { OrderPage } from "./pages/Order";
import { MyOrders } from "./pages/MyOrders";
import { Notifications } from "./pages/Notifications";
import { WalletPage } from "./pages/Wallet";
import { Vouchers } from "./pages/Vouchers";
import { Dashboard } from "./admin/Dashboard";
import { Inventory } from "./admin/Inventory";
import { AdminOrders } from "./admin/Orders";
import { AdminOrder } from "./admin/Order";
import { Promotions } from "./admin/Promotions";
import { Operations } from "./admin/Operations";

/** A page, given its route's parameter (`:id`) when it has one. */
type Page = (props: { id: string }) => preact.JSX.Element;
/** Every page by its route; `admin` pages need the admin role, every page but the catalogue a session. */
const ROUTES: Array<{ pattern: string; page: Page; access: "public" | "user" | "admin" }> = [
	{ pattern: "/", page: Catalogue, access: "public" },
	{ pattern: "/products/:id", page: ProductPage, access: "public" },
	{ pattern: "/signin", page: SignIn, access: "public" },
	{ pattern: "/cart", page: CartPage, access: "user" },
	{ pattern: "/checkout", page: Checkout, access: "user" },
	{ pattern: "/paid", page: PaymentReturn, access: "user" },
	{ pattern: "/orders", page: MyOrders, access: "user" },
	{ pattern: "/orders/:id", page: OrderPage, access: "user" },
	{ pattern: "/notifications", page: Notifications, access: "user" },
	{ pattern: "/wallet", page: WalletPage, access: "user" },
	{ pattern: "/vouchers", page: Vouchers, access: "user" },
	{ pattern: "/admin", page: Dashboard, access: "admin" },
	{ pattern: "/admin/inventory", page: Inventory, access: "admin" },
	{ pattern: "/admin/orders", page: AdminOrders, access: "admin" },
	{ pattern: "/admin/orders/:id", page: AdminOrder, access: "admin" },
	{ pattern: "/admin/promotions", page: Promotions, access: "admin" },
	{ pattern: "/admin/operations", page: Operations, access: "admin" },
];

function Header() {
	const user = session.value;
	const here = route.value.path;
	const link = (href: string, label: string, extra?: preact.ComponentChildren) => (
		<a href={`#${href}`} aria-current={here === href ? "page" : undefined}>
			{label}
			{extra}
		</a>
	);
	return (
		<header class="top">
			<a class="brand" href="#/">
				Checkout
			</a>
			<nav aria-label="Main">
				{link("/", "Shop")}
				{user && link("/cart", "Cart", cartCount.value > 0 && <span class="count" aria-label={`${cartCount.value} items`}> {cartCount.value}</span>)}
				{user && link("/orders", "My orders")}
				{user && link("/notifications", "Notifications", unread.value > 0 && <span class="count" aria-label={`${unread.value} unread`}> {unread.value}</span>)}
				{user && link("/wallet", "Wallet")}
				{user && link("/vouchers", "Vouchers")}
				{user?.role === "admin" && link("/admin", "Console")}
			</nav>
			<div class="who">
				{user ? (
					<>
						<span>
							{user.sub} <small class="muted">({user.role})</small>
						</span>
						<button type="button" class="link" onClick={() => (session.value = null)}>
							Sign out
						</button>
					</>
				) : (
					<a href="#/signin">Sign in</a>
				)}
			</div>
		</header>
	);
}

function AdminNav() {
	const here = route.value.path;
	const items: Array<[string, string]> = [
		["/admin", "Dashboard"],
		["/admin/inventory", "Inventory"],
		["/admin/orders", "Orders"],
		["/admin/promotions", "Promotions"],
		["/admin/operations", "Operations"],
	];
	return (
		<nav class="subnav" aria-label="Console">
			{items.map(([href, label]) => (
				<a key={href} href={`#${href}`} aria-current={here === href ? "page" : undefined}>
					{label}
				</a>
			))}
		</nav>
	);
}

function App() {
	const { path } = route.value;
	const user = session.value;
	useEffect(() => {
		void refreshUnread();
		const timer = setInterval(() => void refreshUnread(), 10000);
		return () => clearInterval(timer);
	}, [user?.token]);
	let body: preact.JSX.Element = (
		<section>
			<h1>Not found</h1>
			<p>
				No page here. <a href="#/">Back to the shop</a>
			</p>
		</section>
	);
	for (const r of ROUTES) {
		const params = match(r.pattern, path);
		if (!params) continue;
		if (r.access !== "public" && !user) body = <SignIn />;
		else if (r.access === "admin" && user?.role !== "admin")
			body = (
				<section>
					<h1>Admins only</h1>
					<p>This part of the console needs the admin role.</p>
				</section>
			);
		else body = <r.page id={params.id ?? ""} />;
		break;
	}
	return (
		<>
			<a class="skip" href="#main" onClick={e => (e.preventDefault(), document.getElementById("main")?.focus())}>
				Skip to content
			</a>
			<Header />
			{path.startsWith("/admin") && user?.role === "admin" && <AdminNav />}
			<main id="main" tabIndex={-1}>
				{body}
			</main>
		</>
	);
}

render(<App />, document.getElementById("app")!);
