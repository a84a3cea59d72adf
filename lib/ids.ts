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
