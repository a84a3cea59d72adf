import { useState } from "preact/hooks";
import { api, must } from "../api/client";
import { refreshUnread } from "../unread";
import { Empty, ErrorNote, Loading, Pager, shortId, useLoad, when } from "../components/ui";

export function Notifications() {
	const [onlyUnread, setOnlyUnread] = useState(false);
	const [page, setPage] = useState(1);
	const list = useLoad(() => must(api.GET("/api/notifications", { params: { query: { unread: onlyUnread || undefined, page, pageSize: 20 } } })), [onlyUnread, page]);
	const markRead = async (id: string) => {
		await must(api.PUT("/api/notifications/{id}/read", { params: { path: { id } } }));
		list.reload();
		void refreshUnread();
	};
	return (
		<section>
			<h1>Notifications</h1>
			<label class="inline">
				<input
					type="checkbox"
					checked={onlyUnread}
					onChange={e => {
						setOnlyUnread(e.currentTarget.checked);
						setPage(1);
					}}
				/>{" "}
				Unread only
			</label>
			<ErrorNote problem={list.problem} />
			{list.loading && !list.data && <Loading />}
			{list.data?.rows.length === 0 && <Empty>Nothing{onlyUnread ? " unread" : " yet"}.</Empty>}
			<ul class="plain notifications">
				{list.data?.rows.map(n => (
					<li key={n.id} class={`card${n.isRead ? "" : " unread"}`}>
						<h2>
							{n.title} {!n.isRead && <span class="badge info">new</span>}
						</h2>
						<p>{n.message}</p>
						<p class="muted">
							<time dateTime={n.createdAt}>{when(n.createdAt)}</time>
							{n.orderId && (
								<>
									{" · "}
									<a href={`#/orders/${n.orderId}`}>order {shortId(n.orderId)}</a>
								</>
							)}
						</p>
						{!n.isRead && (
							<button type="button" onClick={() => void markRead(n.id)} aria-label={`Mark as read: ${n.title}`}>
								Mark as read
							</button>
						)}
					</li>
				))}
			</ul>
			{list.data && <Pager page={list.data.page} totalPages={list.data.totalPages} onPage={setPage} />}
		</section>
	);
}
