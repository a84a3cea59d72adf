import { useState } from "preact/hooks";
import { api, must } from "../api/client";
import { Empty, ErrorNote, Loading, StatusBadge, Table, shortId, useAction, useLoad, when } from "../components/ui";

/** What the REPL shows an operator: nodes and readiness, stuck sagas, dead letters (with replay), outbox backlogs. */
export function Operations() {
	const nodes = useLoad(() => must(api.GET("/api/admin/nodes")), []);
	const stuck = useLoad(() => must(api.GET("/api/admin/stuck-orders", { params: { query: { olderThanSeconds: 300 } } })), []);
	const letters = useLoad(() => must(api.GET("/api/admin/dead-letters")), []);
	const outbox = useLoad(() => must(api.GET("/api/admin/outbox")), []);
	const { problem, run } = useAction();
	const [notice, setNotice] = useState("");
	const replay = (service: string, letterId: number) =>
		run(async () => {
			const { outcome } = await must(api.POST("/api/admin/dead-letters/{service}/{letterId}/replay", { params: { path: { service, letterId } } }));
			setNotice(`Replayed ${service} #${letterId}: ${outcome}.`);
			letters.reload();
		});
	return (
		<section>
			<h1>Operations</h1>
			<ErrorNote problem={problem} />
			{notice && (
				<p class="notice" role="status">
					{notice}
				</p>
			)}
			<h2>Nodes</h2>
			<ErrorNote problem={nodes.problem} />
			{nodes.loading && !nodes.data && <Loading />}
			{nodes.data && (
				<Table caption="Nodes" columns={["Node", "Ready", "Services", "Checks", "Up"]}>
					{nodes.data.map(n => (
						<tr key={n.nodeID}>
							<td>{n.nodeID}</td>
							<td>
								<span class={`badge ${n.status === "ok" ? "good" : "bad"}`}>{n.status}</span>
							</td>
							<td>{n.services.join(", ") || "—"}</td>
							<td>{n.error ?? (Object.entries(n.checks).map(([k, v]) => `${k} ${v}`).join(", ") || "—")}</td>
							<td>{n.uptimeSeconds !== undefined ? `${Math.round(n.uptimeSeconds / 60)} min` : "—"}</td>
						</tr>
					))}
				</Table>
			)}
			<h2>Stuck orders</h2>
			<p class="muted">Past their step's deadline, or idle five minutes before dispatch.</p>
			<ErrorNote problem={stuck.problem} />
			{stuck.data?.length === 0 && <Empty>No stuck orders.</Empty>}
			{stuck.data && stuck.data.length > 0 && (
				<ul class="plain">
					{stuck.data.map(o => (
						<li key={o.id}>
							<a href={`#/admin/orders/${o.id}`}>{shortId(o.id)}</a> <StatusBadge status={o.status} /> since {when(o.updatedAt)}, re-driven {o.redrives}×
						</li>
					))}
				</ul>
			)}
			<h2>Dead letters</h2>
			<ErrorNote problem={letters.problem} />
			{letters.data?.length === 0 && <Empty>No dead letters.</Empty>}
			{letters.data && letters.data.length > 0 && (
				<Table caption="Dead letters" columns={["Service", "Event", "Error", "Tries", "When", "Action"]}>
					{letters.data.map(d => (
						<tr key={`${d.service}-${d.id}`}>
							<td>{d.service}</td>
							<td>
								<code>{d.eventName}</code>
							</td>
							<td class="wrap">{d.error}</td>
							<td>{d.attempts}</td>
							<td>{when(d.createdAt)}</td>
							<td>
								<button type="button" onClick={() => void replay(d.service, d.id)} aria-label={`Replay ${d.service} dead letter ${d.id}`}>
									Replay
								</button>
							</td>
						</tr>
					))}
				</Table>
			)}
			<h2>Outbox backlog</h2>
			<ErrorNote problem={outbox.problem} />
			{outbox.data && (
				<ul class="plain">
					{outbox.data.map(o => (
						<li key={o.service}>
							{o.service}: {o.unpublished} unpublished
						</li>
					))}
				</ul>
			)}
		</section>
	);
}
