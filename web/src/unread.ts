import { signal } from "@preact/signals";
import { api } from "./api/client";
import { session } from "./session";

/** Unread notifications, for the header's badge (refreshed every 10 s while signed in, and by the notifications page). */
export const unread = signal(0);
export async function refreshUnread() {
	if (!session.value) return;
	const { data } = await api.GET("/api/notifications", { params: { query: { unread: true, pageSize: 1 } } });
	if (data) unread.value = data.total;
}
