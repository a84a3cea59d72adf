import { useState } from "preact/hooks";
import { api, must } from "../api/client";
import { Empty, ErrorNote, Field, Loading, Pager, Table, described, money, shortId, useAction, useLoad, when } from "../components/ui";

export function WalletPage() {
	const wallet = useLoad(() => must(api.GET("/api/wallet")), []);
	const [page, setPage] = useState(1);
	const ledger = useLoad(() => must(api.GET("/api/wallet/transactions", { params: { query: { page, pageSize: 20 } } })), [page]);
	const [amount, setAmount] = useState("50.00");
	const [card, setCard] = useState("tok_visa");
	const { problem, busy, run } = useAction();
	const topUp = (e: Event) => {
		e.preventDefault();
		void run(async () => {
			await must(api.POST("/api/wallet/top-ups", { params: { header: { "Idempotency-Key": crypto.randomUUID() } }, body: { amount: Math.round(Number(amount) * 100), cardToken: card } }));
			wallet.reload();
			ledger.reload();
		});
	};
	return (
		<section>
			<h1>Wallet</h1>
			<ErrorNote problem={wallet.problem} />
			{wallet.data ? (
				<p class="price">
					Balance <strong>{money(wallet.data.balance, wallet.data.currency)}</strong>
				</p>
			) : (
				<Loading />
			)}
			<form class="card row" onSubmit={topUp}>
				<h2>Top up by card</h2>
				<Field id="topup-amount" label="Amount" error={problem?.fields.amount}>
					<input {...described("topup-amount", problem?.fields.amount)} type="number" min="0.01" step="0.01" required value={amount} onInput={e => setAmount(e.currentTarget.value)} />
				</Field>
				<Field id="topup-card" label="Test card">
					<select id="topup-card" value={card} onChange={e => setCard(e.currentTarget.value)}>
						<option value="tok_visa">Visa (succeeds)</option>
						<option value="tok_chargeDeclined">Declined card</option>
					</select>
				</Field>
				<button type="submit" disabled={busy}>
					Top up
				</button>
				<ErrorNote problem={problem} />
			</form>
			<h2>Ledger</h2>
			<ErrorNote problem={ledger.problem} />
			{ledger.data?.rows.length === 0 && <Empty>No movements yet.</Empty>}
			{ledger.data && ledger.data.rows.length > 0 && (
				<Table caption="Wallet ledger" columns={["When", "What", "Amount", "Balance after"]}>
					{ledger.data.rows.map(t => (
						<tr key={t.id}>
							<td>{when(t.createdAt)}</td>
							<td>
								{t.reason.replace("_", " ").toLowerCase()}
								{t.orderId && (
									<>
										{" · "}
										<a href={`#/orders/${t.orderId}`}>order {shortId(t.orderId)}</a>
									</>
								)}
							</td>
							<td class={t.type === "DEBIT" ? "debit" : "credit"}>
								{t.type === "DEBIT" ? "−" : "+"}
								{money(t.amount)}
							</td>
							<td>{money(t.balanceAfter)}</td>
						</tr>
					))}
				</Table>
			)}
			{ledger.data && <Pager page={ledger.data.page} totalPages={ledger.data.totalPages} onPage={setPage} />}
		</section>
	);
}
