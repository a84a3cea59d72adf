/**
 * For actions that wait on the card gateway: up to (PAYMENT_RETRIES + 1) × PAYMENT_TIMEOUT_MS plus
 * backoff. Moleculer's timeout middleware reads `timeout` from the action definition (its
 * published types omit it), so callers wait this long instead of REQUEST_TIMEOUT_MS.
 */
export const GATEWAY_CALL: Record<string, unknown> = { timeout: 60_000 };
