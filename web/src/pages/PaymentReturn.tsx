import { useEffect, useState } from "preact/hooks";
import { api, must, type ApiProblem, type PaymentSession } from "../api/client";
import { route } from "../router";
import { ErrorNote, Loading, money } from "../components/ui";

/** Where the payment provider sends the customer back: the session is verified, then the order followed. */
export function PaymentReturn() {
	const sessionId = route.value.query.get("session") ?? "";
	const [session, setSession] = useState<PaymentSession | null>(null);
	const [problem, setProblem] = useState<ApiProblem | null>(null);
	useEffect(() => {
		must(api.POST("/api/payment-sessions/{sessionId}/verify", { params: { path: { sessionId } } })).then(setSession, setProblem);
	}, [sessionId]);
	return (
		<section class="narrow">
			<h1>Payment</h1>
			<ErrorNote problem={problem} />
			{!session && !problem && <Loading what="Checking the payment with the provider" />}
			{session && (
				<div class="card" role="status">
					{session.paymentStatus === "paid" ? (
						<p class="ok">Paid {money(session.amount, session.currency)}. Thank you!</p>
					) : session.status === "expired" ? (
						<p class="error">The payment page expired before it was paid. You can start a new payment from the order.</p>
					) : (
						<p>The payment is not complete yet.</p>
					)}
					<p>
						<a href={`#/orders/${session.orderId}`}>Follow the order</a>
					</p>
				</div>
			)}
		</section>
	);
}
