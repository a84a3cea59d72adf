import { useState } from "preact/hooks";
import { api, must } from "../api/client";
import { Empty, ErrorNote, Field, Loading, Table, described, money, useAction, useLoad, when } from "../components/ui";

export function Promotions() {
	const list = useLoad(() => must(api.GET("/api/promotions", { params: { query: { pageSize: 100 } } })), []);
	const [draft, setDraft] = useState({ code: "", type: "PERCENT" as "PERCENT" | "FIXED", value: "10", minSubtotal: "" });
	const { problem, run } = useAction();
	const create = (e: Event) => {
		e.preventDefault();
		void run(async () => {
			const value = draft.type === "FIXED" ? Math.round(Number(draft.value) * 100) : Number(draft.value);
			await must(api.POST("/api/promotions", { body: { code: draft.code, type: draft.type, value, minSubtotal: draft.minSubtotal ? Math.round(Number(draft.minSubtotal) * 100) : undefined } }));
			setDraft({ ...draft, code: "" });
			list.reload();
		});
	};
	const f = problem?.fields ?? {};
	return (
		<section>
			<h1>Promotions</h1>
			{list.loading && !list.data && <Loading />}
			<ErrorNote problem={list.problem} />
			{list.data?.rows.length === 0 && <Empty>No promotions.</Empty>}
			{list.data && list.data.rows.length > 0 && (
				<Table caption="Promotions" columns={["Code", "Discount", "Minimum", "Valid", "Redeemed"]}>
					{list.data.rows.map(p => (
						<tr key={p.code}>
							<td>
								<code>{p.code}</code>
							</td>
							<td>{p.type === "PERCENT" ? `${p.value} %` : money(p.value)}</td>
							<td>{p.minSubtotal ? money(p.minSubtotal) : "—"}</td>
							<td>{p.startsAt || p.endsAt ? `${p.startsAt ? when(p.startsAt) : "…"} – ${p.endsAt ? when(p.endsAt) : "…"}` : "always"}</td>
							<td>
								{p.redemptions}
								{p.maxRedemptions ? ` of ${p.maxRedemptions}` : ""}
							</td>
						</tr>
					))}
				</Table>
			)}
			<form class="card" onSubmit={create}>
				<h2>New promotion</h2>
				<ErrorNote problem={problem} />
				<Field id="promo-code" label="Code" error={f.code}>
					<input {...described("promo-code", f.code)} required value={draft.code} onInput={e => setDraft({ ...draft, code: e.currentTarget.value.toUpperCase() })} />
				</Field>
				<Field id="promo-type" label="Type">
					<select id="promo-type" value={draft.type} onChange={e => setDraft({ ...draft, type: e.currentTarget.value as "PERCENT" | "FIXED" })}>
						<option value="PERCENT">Percent off</option>
						<option value="FIXED">Amount off</option>
					</select>
				</Field>
				<Field id="promo-value" label={draft.type === "PERCENT" ? "Percent" : "Amount"} error={f.value}>
					<input {...described("promo-value", f.value)} type="number" min="0" step={draft.type === "PERCENT" ? "1" : "0.01"} required value={draft.value} onInput={e => setDraft({ ...draft, value: e.currentTarget.value })} />
				</Field>
				<Field id="promo-min" label="Minimum subtotal (optional)" error={f.minSubtotal}>
					<input {...described("promo-min", f.minSubtotal)} type="number" min="0" step="0.01" value={draft.minSubtotal} onInput={e => setDraft({ ...draft, minSubtotal: e.currentTarget.value })} />
				</Field>
				<button type="submit" class="primary">
					Create
				</button>
			</form>
		</section>
	);
}
