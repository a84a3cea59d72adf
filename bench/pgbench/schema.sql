-- The floor's tables: the least a checkout must touch (stock, wallet and its ledger, the order,
-- one outbox event). 1000 products as in the checkout profile, 32 customers with money.
DROP SCHEMA IF EXISTS floor CASCADE;
CREATE SCHEMA floor;
CREATE TABLE floor.products (id int PRIMARY KEY, price bigint NOT NULL, on_hand int NOT NULL, reserved int NOT NULL DEFAULT 0);
CREATE TABLE floor.wallets (user_id int PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE floor.ledger (id bigserial PRIMARY KEY, user_id int NOT NULL, amount bigint NOT NULL, order_id bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE floor.orders (id bigint PRIMARY KEY, user_id int NOT NULL, status text NOT NULL, items jsonb NOT NULL, total bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE floor.outbox (seq bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE, event_name text NOT NULL, envelope jsonb NOT NULL, published_at timestamptz);
INSERT INTO floor.products SELECT i, 100 + (i % 50) * 10, 1000000000 FROM generate_series(1, 1000) i;
INSERT INTO floor.wallets SELECT u, 1000000000000 FROM generate_series(1, 32) u;
