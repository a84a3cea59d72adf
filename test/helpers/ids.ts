/** A UUID v7 as the services write it: lowercase, the RFC variant (what lib/ids.ts `newId` makes and PostgreSQL prints). */
export const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
