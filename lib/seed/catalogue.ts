/** The demo catalogue: loaded by `npm run seed` and by the embedded default on its first start. */
export interface DemoProduct {
	sku: string;
	name: string;
	description: string;
	category: string;
	price: number;
	stock: number;
}

export const DEMO_CATALOGUE: DemoProduct[] = [
	{ sku: "BOOK-001", name: "The Pragmatic Programmer", description: "20th anniversary edition, hardcover", category: "books", price: 4299, stock: 40 },
	{ sku: "BOOK-002", name: "Designing Data-Intensive Applications", description: "Reliable, scalable, maintainable systems", category: "books", price: 4999, stock: 35 },
	{ sku: "BOOK-003", name: "Release It!", description: "Design and deploy production-ready software", category: "books", price: 3899, stock: 25 },
	{ sku: "MUG-001", name: "Espresso cup", description: "Porcelain, 80 ml", category: "kitchen", price: 1200, stock: 120 },
	{ sku: "MUG-002", name: "Travel mug", description: "Insulated steel, 350 ml", category: "kitchen", price: 2450, stock: 60 },
	{ sku: "KETTLE-01", name: "Gooseneck kettle", description: "Electric, temperature control", category: "kitchen", price: 8900, stock: 15 },
	{ sku: "TEE-S", name: "Logo T-shirt S", description: "Organic cotton", category: "apparel", price: 1999, stock: 50 },
	{ sku: "TEE-M", name: "Logo T-shirt M", description: "Organic cotton", category: "apparel", price: 1999, stock: 80 },
	{ sku: "TEE-L", name: "Logo T-shirt L", description: "Organic cotton", category: "apparel", price: 1999, stock: 70 },
	{ sku: "HOODIE-M", name: "Hoodie M", description: "Brushed fleece", category: "apparel", price: 5499, stock: 30 },
	{ sku: "KB-001", name: "Mechanical keyboard", description: "Tenkeyless, brown switches", category: "electronics", price: 11900, stock: 20 },
	{ sku: "MOUSE-01", name: "Wireless mouse", description: "Ergonomic, silent clicks", category: "electronics", price: 3990, stock: 45 },
	{ sku: "HEAD-01", name: "Noise-cancelling headphones", description: "Over-ear, 30 h battery", category: "electronics", price: 24900, stock: 10 },
	{ sku: "CABLE-01", name: "USB-C cable", description: "2 m, 100 W", category: "electronics", price: 1499, stock: 200 },
	{ sku: "LAMP-01", name: "Desk lamp", description: "Dimmable LED", category: "home", price: 4590, stock: 25 },
	{ sku: "PLANT-01", name: "Snake plant", description: "In a 12 cm ceramic pot", category: "home", price: 2290, stock: 18 },
	{ sku: "NOTE-01", name: "Dotted notebook", description: "A5, 160 pages", category: "stationery", price: 1350, stock: 150 },
	{ sku: "PEN-01", name: "Fountain pen", description: "Fine nib, blue ink", category: "stationery", price: 3200, stock: 40 },
	{ sku: "BAG-01", name: "Laptop backpack", description: "Water-resistant, 20 l", category: "accessories", price: 7900, stock: 22 },
	{ sku: "BOTTLE-01", name: "Water bottle", description: "Steel, 750 ml", category: "accessories", price: 1890, stock: 90 },
];
