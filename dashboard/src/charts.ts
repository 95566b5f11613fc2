/** The live charts (uPlot): a rolling window of points, one chart per measure. */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** Points kept per chart (one a second: two minutes). */
export const POINTS_MAX = 120;
const HEIGHT_PX = 160;
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#4b5563'];

export interface ChartSpec {
  readonly title: string;
  readonly unit: string;
  /** The series' names (members, or fixed ones). */
  readonly series: readonly string[];
}

export class LiveChart {
  private readonly plot: uPlot;
  private readonly xs: number[] = [];
  private readonly ys: (number | null)[][];

  constructor(
    parent: HTMLElement,
    readonly spec: ChartSpec,
  ) {
    this.ys = spec.series.map(() => []);
    const box = document.createElement('div');
    box.className = 'chart';
    box.dataset.chart = spec.title;
    parent.append(box);
    this.plot = new uPlot(
      {
        title: `${spec.title} (${spec.unit})`,
        width: chartWidth(parent),
        height: HEIGHT_PX,
        scales: { x: { time: true }, y: { range: (_u, min, max) => [0, Math.max(1, max, min)] } },
        legend: { live: false },
        series: [
          {},
          ...spec.series.map((name, i) => ({
            label: name,
            stroke: COLORS[i % COLORS.length]!,
            width: 1.5,
            spanGaps: false,
          })),
        ],
        axes: [{}, { size: 50 }],
      },
      [[], ...spec.series.map(() => [])],
      box,
    );
  }

  /** Adds a point at `atMs` (values in the order of `spec.series`, null: no value). */
  push(atMs: number, values: readonly (number | null)[]): void {
    this.xs.push(atMs / 1000);
    for (const [i, v] of values.entries()) this.ys[i]?.push(v);
    if (this.xs.length > POINTS_MAX) {
      this.xs.shift();
      for (const y of this.ys) y.shift();
    }
    this.plot.setData([this.xs, ...this.ys] as uPlot.AlignedData);
  }

  resize(parent: HTMLElement): void {
    this.plot.setSize({ width: chartWidth(parent), height: HEIGHT_PX });
  }

  destroy(): void {
    this.plot.root.parentElement?.remove();
    this.plot.destroy();
  }
}

function chartWidth(parent: HTMLElement): number {
  // Two charts a row on a wide screen, one on a phone.
  const width = parent.clientWidth || 320;
  return Math.max(260, width >= 760 ? Math.floor(width / 2) - 16 : width - 8);
}
