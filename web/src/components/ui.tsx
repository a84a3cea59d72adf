import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import { isProblem, problemOf, type ApiProblem } from "../api/client";

/** Minor units as money ("42.00 EUR" in the browser's locale). */
export function money(cents: number, currency = "EUR"): string {
	return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(cents / 100);
}
export const when = (iso: string) => new Date(iso).toLocaleString();
/** An order's short ID, as notifications write it (lib/ids.ts): its last 8 characters, the random ones. */
export const shortId = (id: string) => id.slice(-8);

/** Loads something for a page: its data, a problem, whether it is loading, and a reload. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): { data?: T; problem?: ApiProblem; loading: boolean; reload: () => void } {
	const [state, setState] = useState<{ data?: T; problem?: ApiProblem; loading: boolean }>({ loading: true });
	const [tick, setTick] = useState(0);
	useEffect(() => {
		let live = true;
		setState(s => ({ ...s, loading: true }));
		load().then(
			data => live && setState({ data, loading: false }),
			err => live && setState({ problem: isProblem(err) ? err : problemOf(undefined), loading: false }),
		);
		return () => {
			live = false;
		};
	}, [...deps, tick]);
	return { ...state, reload: useCallback(() => setTick(t => t + 1), []) };
}

/**
 * A page's writes: `run(fn)` clears the last problem, marks the page busy while `fn` runs and keeps
 * its failure as a problem to show; it answers what `fn` answered, or undefined when it failed.
 */
export function useAction() {
	const [problem, setProblem] = useState<ApiProblem | null>(null);
	const [busy, setBusy] = useState(false);
	const run = useCallback(async <T,>(fn: () => Promise<T>): Promise<T | undefined> => {
		setProblem(null);
		setBusy(true);
		try {
			return await fn();
		} catch (err) {
			setProblem(isProblem(err) ? err : problemOf(undefined));
			return undefined;
		} finally {
			setBusy(false);
		}
	}, []);
	return { problem, setProblem, busy, run };
}

/** A data table: its caption for screen readers, its column headers, its rows. */
export function Table({ caption, columns, children }: { caption: string; columns: string[]; children: ComponentChildren }) {
	return (
		<table>
			<caption class="sr-only">{caption}</caption>
			<thead>
				<tr>
					{columns.map(c => (
						<th key={c} scope="col">
							{c}
						</th>
					))}
				</tr>
			</thead>
			<tbody>{children}</tbody>
		</table>
	);
}

export function Loading({ what = "Loading" }: { what?: string }) {
	return (
		<p class="muted" role="status" aria-live="polite">
			{what}…
		</p>
	);
}

export function Empty({ children }: { children: ComponentChildren }) {
	return <p class="empty">{children}</p>;
}

/** An API problem as people read it: its message, and each line's or field's own. */
export function ErrorNote({ problem }: { problem?: ApiProblem | null }) {
	if (!problem) return null;
	const details = [...problem.lines.map(l => l.message), ...Object.entries(problem.fields).filter(([f]) => !f.includes(".") && !FIELD_SHOWN.has(f)).map(([, m]) => m)];
	return (
		<div class="error" role="alert">
			<strong>{problem.message}</strong>
			{details.length > 0 && (
				<ul>
					{details.map(d => (
						<li key={d}>{d}</li>
					))}
				</ul>
			)}
		</div>
	);
}
/** Fields that pages show next to their inputs (not repeated in the note). */
const FIELD_SHOWN = new Set(["amount", "quantity", "sku", "name", "price", "category", "code", "value", "courier", "trackingNumber", "successUrl", "cancelUrl", "sub"]);

/** A labelled input with its error beside it (tied by aria-describedby). */
export function Field(props: { id: string; label: string; error?: string; children: ComponentChildren; hint?: string }) {
	return (
		<div class={`field${props.error ? " invalid" : ""}`}>
			<label for={props.id}>{props.label}</label>
			{props.children}
			{props.hint && !props.error && (
				<small id={`${props.id}-hint`} class="muted">
					{props.hint}
				</small>
			)}
			{props.error && (
				<small id={`${props.id}-error`} class="field-error">
					{props.error}
				</small>
			)}
		</div>
	);
}
/** The aria attributes of a Field's input. */
export const described = (id: string, error?: string) => ({ id, "aria-invalid": error ? true : undefined, "aria-describedby": error ? `${id}-error` : undefined });

export function Pager({ page, totalPages, onPage }: { page: number; totalPages: number; onPage: (p: number) => void }) {
	if (totalPages <= 1) return null;
	return (
		<nav class="pager" aria-label="Pages">
			<button type="button" disabled={page <= 1} onClick={() => onPage(page - 1)}>
				Previous
			</button>
			<span>
				Page {page} of {totalPages}
			</span>
			<button type="button" disabled={page >= totalPages} onClick={() => onPage(page + 1)}>
				Next
			</button>
		</nav>
	);
}

const TONE: Record<string, string> = { CONFIRMED: "good", DISPATCHED: "good", COMPLETED: "good", FAILED: "bad", PAYMENT_FAILED: "bad", CANCELLED: "bad" };
export function StatusBadge({ status }: { status: string }) {
	return <span class={`badge ${TONE[status] ?? "info"}`}>{status.replace(/_/g, " ").toLowerCase()}</span>;
}
