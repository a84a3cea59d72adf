import { newId } from "../ids";

/** The one envelope of every domain event (SPEC section 7). */
export interface DomainEvent<D = Record<string, any>> {
	eventId: string;
	eventName: string;
	version: 1;
	occurredAt: string;
	correlationId: string | null;
	causationId: string | null;
	producer: { service: string; nodeID: string };
	data: D;
	/** Where it happened in a trace: its consumers continue that trace (not in SPEC's list; optional). */
	trace?: TraceRef;
}

/** A position in a Moleculer trace: the request (trace) ID and the span/context that produced it. */
export interface TraceRef {
	requestID: string;
	parentID: string;
}

/** Where `ctx` stands in its trace, for events written on its behalf. */
export const traceOf = (ctx: { id: string; requestID?: string | null }): TraceRef => ({ requestID: ctx.requestID ?? ctx.id, parentID: ctx.id });

export interface PublishOptions {
	/** Partition key: the order or aggregate id, so one aggregate's events stay ordered. */
	key?: string;
	/** The event that caused this one: its eventId becomes causationId, its correlationId is kept. */
	causedBy?: Pick<DomainEvent, "eventId" | "correlationId" | "trace">;
	correlationId?: string;
	/** The trace it belongs to; by default the cause's. */
	trace?: TraceRef;
}

export function createEnvelope(
	eventName: string,
	data: Record<string, any>,
	producer: DomainEvent["producer"],
	opts: PublishOptions = {},
): DomainEvent {
	return {
		eventId: newId(),
		eventName,
		version: 1,
		occurredAt: new Date().toISOString(),
		correlationId: opts.correlationId ?? opts.causedBy?.correlationId ?? data.orderId ?? null,
		causationId: opts.causedBy?.eventId ?? null,
		producer,
		data,
		...(opts.trace ?? opts.causedBy?.trace ? { trace: opts.trace ?? opts.causedBy?.trace } : {}),
	};
}

/** The key that keeps an aggregate's events in order: explicit, else the order, product or user id. */
export function aggregateKey(event: DomainEvent, explicit?: string): string {
	const d = event.data;
	return explicit ?? d.orderId ?? d.productId ?? d.userId ?? d.voucherId ?? event.eventId;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

/** Checks what arrives from the wire before any handler trusts it. */
export function isDomainEvent(value: unknown): value is DomainEvent {
	const e = value as DomainEvent;
	return (
		typeof e === "object" &&
		e !== null &&
		typeof e.eventId === "string" &&
		UUID.test(e.eventId) &&
		typeof e.eventName === "string" &&
		e.eventName.length > 0 &&
		e.version === 1 &&
		typeof e.occurredAt === "string" &&
		typeof e.producer === "object" &&
		e.producer !== null &&
		typeof e.data === "object" &&
		e.data !== null
	);
}
