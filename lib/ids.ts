import { v7 } from "uuid";

/**
 * A new ID for a row or an event: a UUID v7 (SPEC allows v4 or v7). Its first 48 bits are the
 * time, so each index keyed by these IDs (orders, payments, inboxes, outboxes, the audit log) grows
 * at its right edge instead of touching a random leaf page per insert. After a checkpoint, a random
 * key costs a full-page image in the WAL for almost every insert once the index outgrows the
 * cache's reach (bench/ANALYSIS.md, "Time-ordered IDs"). The other 74 bits are random: an ID is
 * no easier to guess.
 */
export const newId = (): string => v7();

/**
 * The short form of an order's ID that people see (notifications, the web front, the REPL's
 * `order` command): its last 8 characters. Those are random in v7 and v4 alike; the first 8 of a
 * v7 ID are the time, the same for every order placed within the same minute or so.
 */
export const shortId = (id: string): string => id.slice(-8);
