-- The minimum SQL of one checkout, in one transaction: take the stock, debit the wallet with its
-- ledger line, write the order and its event. What our system does beyond this (the saga's steps,
-- idempotency, history, audit, notifications) is what the benchmark compares against this floor.
-- Simple query protocol, values in the text, as the services' raw SQL (Sequelize replacements) runs.
\set product random(1, 1000)
\set customer random(1, 32)
\set order_no random(1, 9000000000000000000)
BEGIN;
UPDATE floor.products SET on_hand = on_hand - 1 WHERE id = :product AND on_hand - reserved >= 1 RETURNING price \gset
UPDATE floor.wallets SET balance = balance - :price WHERE user_id = :customer AND balance >= :price;
INSERT INTO floor.orders (id, user_id, status, items, total) VALUES (:order_no, :customer, 'CONFIRMED', jsonb_build_array(jsonb_build_object('productId', :product, 'quantity', 1)), :price);
INSERT INTO floor.ledger (user_id, amount, order_id) VALUES (:customer, -:price, :order_no);
INSERT INTO floor.outbox (event_id, event_name, envelope) VALUES (gen_random_uuid(), 'order.confirmed', jsonb_build_object('orderId', :order_no, 'total', :price));
END;
