import { useEffect, useRef } from "preact/hooks";
import { BarController, BarElement, CategoryScale, Chart, LinearScale, Tooltip } from "chart.js";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Tooltip);

/**
 * A bar chart (Chart.js, on a canvas) with its numbers also as a table for screen readers and
 * anyone who wants the figures.
 */
export function BarChart({ title, labels, values, format = String }: { title: string; labels: string[]; values: number[]; format?: (v: number) => string }) {
	const canvas = useRef<HTMLCanvasElement>(null);
	useEffect(() => {
		const chart = new Chart(canvas.current!, {
			type: "bar",
			data: { labels, datasets: [{ label: title, data: values, backgroundColor: "#3558a8" }] },
			options: { responsive: true, maintainAspectRatio: false, animation: false, plugins: { tooltip: { callbacks: { label: c => format(Number(c.raw)) } } }, scales: { y: { beginAtZero: true, ticks: { precision: 0, callback: v => format(Number(v)) } } } },
		});
		return () => chart.destroy();
	}, [title, labels.join("|"), values.join("|")]);
	return (
		<figure class="chart">
			<figcaption>{title}</figcaption>
			<div class="chart-box">
				<canvas ref={canvas} role="img" aria-label={`${title}: ${labels.map((l, i) => `${l} ${format(values[i])}`).join(", ")}`} />
			</div>
			<table class="sr-only">
				<caption>{title}</caption>
				<tbody>
					{labels.map((l, i) => (
						<tr key={l}>
							<th scope="row">{l}</th>
							<td>{format(values[i])}</td>
						</tr>
					))}
				</tbody>
			</table>
		</figure>
	);
}
