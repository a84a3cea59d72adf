import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Transaction } from "../lib/transactions";
import nodemailer, { type Transporter } from "nodemailer";
import { DbMixin } from "../mixins/db.mixin";
import { EventsMixin, type BatchHandler, type EventsService } from "../mixins/events.mixin";
import { runtimeOf } from "../lib/runtime";
import { NotFoundError } from "../lib/errors";
import { pageParams } from "../lib/paging";
import { claimSql, runSweep } from "../lib/sweep";
import { formatMoney } from "../lib/domain/money";
import { runEvery, type Periodic } from "../lib/periodic";
import type { DomainEvent } from "../lib/events/envelope";
import { newId, shortId } from "../lib/ids";

type NotificationType = "ORDER" | "PAYMENT" | "DISPATCH" | "VOUCHER" | "REFUND";

interface NotificationRow {
	id: string;
	user_id: string | null;
	audience: "USER" | "ADMINS";
	type: NotificationType;
	title: string;
	message: string;
	order_id: string | null;
	is_read: boolean;
	created_at: Date;
}

interface EmailRow {
	id: string;
	recipient: string;
	subject: string;
	body: string;
	attempts: number;
}

interface Contact {
	user_id: string;
	email: string | null;
	name: string | null;
}

interface Message {
	type: NotificationType;
	title: string;
	message: string;
	audience?: "USER" | "ADMINS";
}

const toNotification = (r: NotificationRow) => ({
	id: r.id,
	type: r.type,
	title: r.title,
	message: r.message,
	orderId: r.order_id ?? undefined,
	isRead: r.is_read,
	createdAt: new Date(r.created_at).toISOString(),
});

const EMAIL_MAX_ATTEMPTS = 5;
const letterParts = (name: string | null) => ({ greeting: `Hello${name ? ` ${name}` : ""},\n\n`, ending: "\n" });
/** The e-mail body of a notification's message. */
const letter = (name: string | null, message: string) => {
	const { greeting, ending } = letterParts(name);
	return greeting + message + ending;
};

/** What each step tells the order's owner (SPEC section 6, Notifications). */
const MESSAGES: Record<string, (d: Record<string, any>) => Message> = {
	"order.created": d => ({ type: "ORDER", title: "Order placed", message: `We received your order ${shortId(d.orderId)} of ${formatMoney(d.total, d.currency)}.` }),
	"payment.authorized": d => ({ type: "PAYMENT", title: "Payment received", message: `Your payment of ${formatMoney(d.amount, d.currency)} for order ${shortId(d.orderId)} went through.` }),
	"payment.failed": d => ({ type: "PAYMENT", title: "Payment failed", message: `The payment for order ${shortId(d.orderId)} failed: ${d.reason} (${d.code}).` }),
	"payment.session_created": d => ({
		type: "PAYMENT",
		title: "Payment page ready",
		message: `Pay ${formatMoney(d.amount, d.currency)} for order ${shortId(d.orderId)} on the payment page before ${new Date(d.expiresAt).toISOString().slice(11, 16)} UTC.`,
	}),
	"payment.session_expired": d => ({ type: "PAYMENT", title: "Payment page expired", message: `The payment page for order ${shortId(d.orderId)} expired unpaid; you can open a new one while the order waits for payment.` }),
	"order.confirmed": d => ({ type: "ORDER", title: "Order confirmed", message: `Your order ${shortId(d.orderId)} is confirmed and will be prepared for shipping.` }),
	"order.dispatched": d => ({ type: "DISPATCH", title: "Order dispatched", message: `Your order ${shortId(d.orderId)} is on its way with ${d.courier}, tracking number ${d.trackingNumber}.` }),
	"order.completed": d => ({ type: "ORDER", title: "Order delivered", message: `Your order ${shortId(d.orderId)} was delivered.` }),
	"order.cancelled": d => ({ type: "ORDER", title: "Order cancelled", message: `Your order ${shortId(d.orderId)} was cancelled (${d.reason}).` }),
	"payment.refunded": d => ({ type: "REFUND", title: "Refund issued", message: `We refunded ${formatMoney(d.amount, d.currency)} for order ${shortId(d.orderId)}.` }),
	"voucher.issued": d => ({ type: "VOUCHER", title: "A voucher for you", message: `Thank you for your order: voucher ${d.code} is worth ${formatMoney(d.amount, d.currency)} on your next one.` }),
	"payment.refund_failed": d => ({
		type: "REFUND",
		audience: "ADMINS",
		title: "Refund failed",
		message: `The refund of payment ${d.paymentId} for order ${d.orderId} failed after its last try (${d.error ?? "unknown error"}). It needs an operator.`,
	}),
};

/**
 * Every event that tells someone something, a batch at a time. Its own inbox: one notification per
 * event id, and the contacts and e-mail addresses it writes are the same when written again.
 */
const notifications: BatchHandler = {
	async batch(events, { tx }) {
		await (this as NotificationThis).notifyAll(events, tx);
	},
	ownInbox: true,
};

type NotificationThis = EventsService & {
	mailer?: Transporter;
	mailSweep?: Periodic;
	mailing?: Promise<void>;
	notifyAll(events: DomainEvent[], tx: Transaction): Promise<void>;
	addressAwaitingEmails(orderId: string, contact: Contact, tx: Transaction): Promise<void>;
	sendDueEmails(): Promise<void>;
};

/**
 * In-app notifications per user, one per step that matters to them, and the same by e-mail when
 * SMTP_URL is set. E-mails are rows written with the notification and sent afterwards with
 * retries, so a slow or broken mail server never holds up the saga.
 */
const NotificationService: ServiceSchema<ServiceSettingSchema, Record<string, any>, Record<string, any>, NotificationThis> = {
	name: "notification",
	mixins: [
		DbMixin({
			migrations: [
				{
					id: "notification-001-notifications-emails",
					sql: `
						CREATE TABLE order_contacts (
							order_id uuid PRIMARY KEY,
							user_id text NOT NULL,
							email text,
							name text
						);
						CREATE TABLE notifications (
							id uuid PRIMARY KEY,
							event_id uuid NOT NULL UNIQUE,
							audience text NOT NULL CHECK (audience IN ('USER', 'ADMINS')),
							user_id text,
							type text NOT NULL CHECK (type IN ('ORDER', 'PAYMENT', 'DISPATCH', 'VOUCHER', 'REFUND')),
							title text NOT NULL,
							message text NOT NULL,
							order_id uuid,
							is_read boolean NOT NULL DEFAULT false,
							created_at timestamptz NOT NULL DEFAULT clock_timestamp()
						);
						CREATE INDEX notifications_by_user ON notifications (user_id, created_at DESC);
						CREATE TABLE emails (
							id uuid PRIMARY KEY,
							notification_id uuid NOT NULL REFERENCES notifications (id),
							recipient text NOT NULL,
							subject text NOT NULL,
							body text NOT NULL,
							status text NOT NULL CHECK (status IN ('PENDING', 'SENT', 'FAILED')),
							attempts integer NOT NULL DEFAULT 0,
							next_at timestamptz NOT NULL DEFAULT now(),
							last_error text
						);
						CREATE INDEX emails_due ON emails (next_at) WHERE status = 'PENDING';`,
				},
				{
					// Events of one order travel on several topics: a payment's may come before the
					// order.created that carries the address, so its e-mail waits for the contact.
					id: "notification-002-emails-awaiting-contact",
					sql: `
						ALTER TABLE order_contacts ALTER COLUMN user_id DROP NOT NULL;
						ALTER TABLE emails ALTER COLUMN recipient DROP NOT NULL, ADD COLUMN order_id uuid;
						ALTER TABLE emails DROP CONSTRAINT emails_status_check;
						ALTER TABLE emails ADD CONSTRAINT emails_status_check CHECK (status IN ('AWAITING_CONTACT', 'PENDING', 'SENT', 'FAILED'));
						CREATE INDEX emails_awaiting_contact ON emails (order_id) WHERE status = 'AWAITING_CONTACT';`,
				},
			],
		}),
		EventsMixin({
			handlers: Object.fromEntries(Object.keys(MESSAGES).map(name => [name, notifications])),
			sink: true,
		}),
	],

	actions: {
		/** The caller's notifications, newest first (admins also see the operators' ones). */
		list: {
			params: { userId: { type: "string", min: 1 }, unread: { type: "boolean", optional: true, convert: true }, includeAdmin: { type: "boolean", optional: true }, ...pageParams },
			async handler(ctx: Context<{ userId: string; unread?: boolean; includeAdmin?: boolean; page: number; pageSize: number }>) {
				const { userId, unread, includeAdmin } = ctx.params;
				const where = `(user_id = :userId${includeAdmin ? " OR audience = 'ADMINS'" : ""})${unread ? " AND NOT is_read" : ""}`;
				return this.paged({ table: this.table("notifications"), where, orderBy: "created_at DESC, id" }, { userId }, ctx.params, toNotification);
			},
		},

		/** Marks one of the caller's notifications read (404 if it is not theirs). */
		markRead: {
			params: { id: { type: "uuid" }, userId: { type: "string", min: 1 }, includeAdmin: { type: "boolean", optional: true } },
			async handler(ctx: Context<{ id: string; userId: string; includeAdmin?: boolean }>) {
				const [row] = await this.sql<NotificationRow>(
					`UPDATE ${this.table("notifications")} SET is_read = true WHERE id = :id AND (user_id = :userId${ctx.params.includeAdmin ? " OR audience = 'ADMINS'" : ""}) RETURNING *`,
					ctx.params,
				);
				if (!row) throw new NotFoundError("Notification", { id: ctx.params.id });
				return toNotification(row);
			},
		},
	},

	methods: {
		/**
		 * A batch of events as notifications: the contacts order.created brings stored in one
		 * statement, the contacts the others need read in one, the notifications (and with SMTP their
		 * e-mails) inserted in one each.
		 */
		async notifyAll(events: DomainEvent[], tx: Transaction) {
			const contacts = new Map<string, Contact>();
			for (const e of events) {
				if (e.eventName === "order.created") contacts.set(e.data.orderId, { user_id: e.data.userId, email: e.data.customer?.email ?? null, name: e.data.customer?.name ?? null });
			}
			if (contacts.size > 0) {
				const rows = [...contacts].map(([orderId, c]) => ({ order_id: orderId, ...c }));
				this.queueSql(
					`INSERT INTO ${this.table("order_contacts")} (order_id, user_id, email, name) SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS c(order_id uuid, user_id text, email text, name text)
					 ON CONFLICT (order_id) DO UPDATE SET user_id = excluded.user_id, email = excluded.email, name = excluded.name`,
					{ rows: JSON.stringify(rows) },
					tx,
				);
				if (this.mailer) for (const [orderId, contact] of contacts) await this.addressAwaitingEmails(orderId, contact, tx);
			}
			const messages = events.map(event => ({ event, d: event.data as Record<string, any>, text: MESSAGES[event.eventName](event.data) }));
			// The contact order.created stored, for e-mails and for events that do not name the owner.
			// If it is still on its way (another topic), a row without owner is left for it: the row lock
			// orders this with its arrival, so an e-mail queued here as awaiting is always found by it.
			const wanted = new Set(messages.filter(({ d, text }) => text.audience !== "ADMINS" && d.orderId && !contacts.has(d.orderId) && (this.mailer || !d.userId)).map(m => m.d.orderId as string));
			if (wanted.size > 0) {
				const rows = await this.sql<Contact & { order_id: string }>(
					`INSERT INTO ${this.table("order_contacts")} (order_id) SELECT unnest(ARRAY[:orderIds]::uuid[]) ON CONFLICT (order_id) DO UPDATE SET order_id = excluded.order_id RETURNING order_id, user_id, email, name`,
					{ orderIds: [...wanted] },
					tx,
				);
				for (const r of rows) if (r.user_id) contacts.set(r.order_id, r);
			}
			const notifications = messages.map(({ event, d, text }) => {
				const toUser = text.audience !== "ADMINS";
				const contact = toUser && d.orderId ? contacts.get(d.orderId) : undefined;
				// Every event for a customer names them (payment events since they carry userId); an
				// older producer's may not, and is retried until order.created has told the owner.
				const userId = toUser ? (d.userId ?? contact?.user_id) : null;
				if (toUser && !userId) throw new Error(`owner of order ${d.orderId} not known yet`);
				return { id: newId(), event_id: event.eventId, audience: text.audience ?? "USER", user_id: userId, type: text.type, title: text.title, message: text.message, order_id: d.orderId ?? null, toUser, contact };
			});
			const insert = `INSERT INTO ${this.table("notifications")} (id, event_id, audience, user_id, type, title, message, order_id)
				 SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS n(id uuid, event_id uuid, audience text, user_id text, type text, title text, message text, order_id uuid)
				 ON CONFLICT (event_id) DO NOTHING`;
			const replacements = { rows: JSON.stringify(notifications.map(({ toUser, contact, ...row }) => row)) };
			// Without SMTP nothing reads which were new: the insert goes with the commit.
			if (!this.mailer) return this.queueSql(insert, replacements, tx);
			const inserted = await this.sql<{ id: string }>(`${insert} RETURNING id`, replacements, tx);
			const fresh = new Set(inserted.map(r => r.id));
			const emails = notifications
				.filter(n => fresh.has(n.id) && n.toUser && (!n.contact || n.contact.email))
				.map(n => ({
					id: newId(),
					notification_id: n.id,
					order_id: n.order_id,
					recipient: n.contact?.email ?? null,
					subject: n.title,
					body: n.contact ? letter(n.contact.name, n.message) : n.message,
					status: n.contact ? "PENDING" : "AWAITING_CONTACT",
				}));
			if (emails.length === 0) return;
			await this.sql(
				`INSERT INTO ${this.table("emails")} (id, notification_id, order_id, recipient, subject, body, status)
				 SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS e(id uuid, notification_id uuid, order_id uuid, recipient text, subject text, body text, status text)`,
				{ rows: JSON.stringify(emails) },
				tx,
			);
			if (emails.some(e => e.status === "PENDING")) tx.afterCommit(() => void this.sendDueEmails());
		},

		/** The order's contact has arrived: its waiting e-mails get the address (or are dropped without one). */
		async addressAwaitingEmails(orderId: string, contact: Contact, tx: Transaction) {
			const awaiting = `order_id = :orderId AND status = 'AWAITING_CONTACT'`;
			if (!contact.email) {
				await this.sql(`DELETE FROM ${this.table("emails")} WHERE ${awaiting}`, { orderId }, tx);
				return;
			}
			await this.sql(
				`UPDATE ${this.table("emails")} SET recipient = :email, body = :greeting || body || :ending, status = 'PENDING', next_at = now() WHERE ${awaiting}`,
				{ orderId, email: contact.email, ...letterParts(contact.name) },
				tx,
			);
		},

		/** Sends what is due; a failure is retried with backoff, and given up (FAILED) after the last try. */
		async sendDueEmails() {
			if (!this.mailer) return;
			if (this.mailing) return this.mailing;
			this.mailing = runSweep<EmailRow, Error | undefined>({
				claim: () => this.sql(claimSql({ table: this.table("emails"), due: "status = 'PENDING' AND next_at <= now()", nextColumn: "next_at", attemptsColumn: "attempts", leaseSeconds: 60 })),
				attempt: mail =>
					this.mailer!.sendMail({ from: "Checkout <no-reply@checkout.local>", to: mail.recipient, subject: mail.subject, text: mail.body }).then(
						() => undefined,
						(err: Error) => err,
					),
				settled: error => !error,
				attemptsOf: mail => mail.attempts,
				maxAttempts: EMAIL_MAX_ATTEMPTS,
				retry: { baseMs: 500, maxMs: 60000 },
				record: (mail, error, verdict) =>
					this.sql(`UPDATE ${this.table("emails")} SET status = :status, last_error = :error, next_at = COALESCE(:next, next_at) WHERE id = :id`, {
						id: mail.id,
						status: verdict.kind === "done" ? "SENT" : verdict.kind === "gaveUp" ? "FAILED" : "PENDING",
						error: error?.message ?? null,
						next: verdict.kind === "retry" ? verdict.next : null,
					}).then(() => undefined),
			}).finally(() => (this.mailing = undefined));
			return this.mailing;
		},
	},

	async started() {
		const { smtpUrl } = runtimeOf(this.broker).config;
		if (!smtpUrl) return;
		this.mailer = nodemailer.createTransport(smtpUrl);
		this.mailSweep = runEvery(1000, () => this.sendDueEmails(), this.logger, "E-mail sweep");
	},

	async stopped() {
		await this.mailSweep?.stop();
		await this.mailing;
		this.mailer?.close();
	},
};

export default NotificationService;
