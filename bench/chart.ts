/**
 * A hand-built SVG of latency over time: per-interval p50, p99 and max lines on a log scale, every request that
 * was not a cache hit as a dot, and vertical markers where tokens were fetched, became due for refresh, reached
 * the broker's 60 s serving limit, or expired. An expiry spike would show as a p99/max peak at a red marker.
 */
import type { Bucket } from './stats';

export type MarkerKind = 'entra' | 'refresh-due' | 'serve-limit' | 'expiry';

export interface ChartInput {
  title: string;
  subtitle: string;
  runS: number;
  buckets: Bucket[];
  /** Requests that were not hits: (s since the run began, latency ms). */
  points: Array<{ atS: number; latencyMs: number; error: boolean }>;
  markers: Array<{ atS: number; kind: MarkerKind }>;
  /** p99 of the bare GetItem floor, drawn as a horizontal line. */
  floorP99Ms?: number;
}

const WIDTH = 1000;
const HEIGHT = 460;
const M = { left: 64, right: 20, top: 58, bottom: 100 };

const MARKER_STYLE: Record<MarkerKind, { color: string; dash: string; label: string }> = {
  entra: { color: '#1f77b4', dash: '4 3', label: 'Entra request (token fetched)' },
  'refresh-due': { color: '#2ca02c', dash: '2 4', label: 'refresh point of a token' },
  'serve-limit': { color: '#ff7f0e', dash: '6 3', label: 'token within 60 s of expiry (no longer served)' },
  expiry: { color: '#d62728', dash: '', label: 'token expiry' },
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(n < 1 ? 2 : 1));

/** Renders the chart as a standalone SVG document. */
export function latencyChart(input: ChartInput): string {
  const plotW = WIDTH - M.left - M.right;
  const plotH = HEIGHT - M.top - M.bottom;
  const values = [
    ...input.buckets.flatMap((b) => [b.summary.p50, b.summary.p99, b.summary.max]),
    ...input.points.map((p) => p.latencyMs),
    ...(input.floorP99Ms ? [input.floorP99Ms] : []),
  ].filter((v) => Number.isFinite(v) && v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.max(0.01, Math.min(...values, 1))));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values, 10)));
  const x = (s: number) => M.left + (Math.min(Math.max(s, 0), input.runS) / input.runS) * plotW;
  const y = (ms: number) =>
    M.top +
    plotH -
    ((Math.log10(Math.max(ms, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotH;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="11">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#fff"/>`,
    `<text x="${M.left}" y="20" font-size="15" font-weight="bold">${esc(input.title)}</text>`,
    `<text x="${M.left}" y="38" fill="#555">${esc(input.subtitle)}</text>`,
  );

  // Axes and grid: 1-2-5 ticks per decade on the log scale, whole seconds (at a readable step) on the time axis.
  for (let decade = lo; decade < hi * 1.01; decade *= 10) {
    for (const f of [1, 2, 5]) {
      const v = decade * f;
      if (v < lo || v > hi) continue;
      out.push(
        `<line x1="${M.left}" x2="${M.left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`,
        `<text x="${M.left - 6}" y="${y(v) + 4}" text-anchor="end">${fmt(v)}</text>`,
      );
    }
  }
  const step = [1, 2, 5, 10, 15, 30, 60, 120].find((s) => input.runS / s <= 15) ?? 300;
  for (let s = 0; s <= input.runS + 1e-9; s += step) {
    out.push(
      `<line x1="${x(s)}" x2="${x(s)}" y1="${M.top + plotH}" y2="${M.top + plotH + 4}" stroke="#333"/>`,
      `<text x="${x(s)}" y="${M.top + plotH + 16}" text-anchor="middle">${s}</text>`,
    );
  }
  out.push(
    `<rect x="${M.left}" y="${M.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`,
    `<text x="${M.left + plotW / 2}" y="${M.top + plotH + 32}" text-anchor="middle">time since start of the cached run (s)</text>`,
    `<text transform="translate(16 ${M.top + plotH / 2}) rotate(-90)" text-anchor="middle">latency (ms, log scale)</text>`,
  );

  for (const marker of input.markers) {
    if (marker.atS < 0 || marker.atS > input.runS) continue;
    const style = MARKER_STYLE[marker.kind];
    out.push(
      `<line x1="${x(marker.atS)}" x2="${x(marker.atS)}" y1="${M.top}" y2="${M.top + plotH}" stroke="${style.color}" stroke-width="1.5" stroke-dasharray="${style.dash}"/>`,
    );
  }
  if (input.floorP99Ms !== undefined && Number.isFinite(input.floorP99Ms)) {
    out.push(
      `<line x1="${M.left}" x2="${M.left + plotW}" y1="${y(input.floorP99Ms)}" y2="${y(input.floorP99Ms)}" stroke="#8c564b" stroke-dasharray="1 3" stroke-width="1.5"/>`,
    );
  }

  const line = (pick: (b: Bucket) => number, color: string, width: number, dash = '') => {
    const pts = input.buckets
      .filter((b) => Number.isFinite(pick(b)))
      .map(
        (b) =>
          `${x(b.startS + (input.buckets[1]?.startS ?? input.runS) / 2).toFixed(1)},${y(pick(b)).toFixed(1)}`,
      );
    if (pts.length > 0)
      out.push(
        `<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="${width}" stroke-dasharray="${dash}"/>`,
      );
  };
  line((b) => b.summary.max, '#777', 1, '3 2');
  line((b) => b.summary.p99, '#9467bd', 2);
  line((b) => b.summary.p50, '#17becf', 2);
  for (const p of input.points.slice(0, 5000)) {
    out.push(
      `<circle cx="${x(p.atS).toFixed(1)}" cy="${y(p.latencyMs).toFixed(1)}" r="2.5" fill="${p.error ? '#000' : '#d62728'}" fill-opacity="0.7"/>`,
    );
  }

  // Legend, three columns under the axis title.
  const legend: Array<{ label: string; draw: (lx: number, ly: number) => string }> = [
    {
      label: 'p50 per interval',
      draw: (lx, ly) =>
        `<line x1="${lx}" x2="${lx + 18}" y1="${ly}" y2="${ly}" stroke="#17becf" stroke-width="2"/>`,
    },
    {
      label: 'p99 per interval',
      draw: (lx, ly) =>
        `<line x1="${lx}" x2="${lx + 18}" y1="${ly}" y2="${ly}" stroke="#9467bd" stroke-width="2"/>`,
    },
    {
      label: 'max per interval',
      draw: (lx, ly) =>
        `<line x1="${lx}" x2="${lx + 18}" y1="${ly}" y2="${ly}" stroke="#777" stroke-dasharray="3 2"/>`,
    },
    {
      label: 'miss (red) / error (black)',
      draw: (lx, ly) => `<circle cx="${lx + 9}" cy="${ly}" r="3" fill="#d62728"/>`,
    },
    {
      label: 'bare GetItem p99',
      draw: (lx, ly) =>
        `<line x1="${lx}" x2="${lx + 18}" y1="${ly}" y2="${ly}" stroke="#8c564b" stroke-dasharray="1 3" stroke-width="1.5"/>`,
    },
    ...Object.values(MARKER_STYLE).map((s) => ({
      label: s.label,
      draw: (lx: number, ly: number) =>
        `<line x1="${lx + 9}" x2="${lx + 9}" y1="${ly - 6}" y2="${ly + 6}" stroke="${s.color}" stroke-width="1.5" stroke-dasharray="${s.dash}"/>`,
    })),
  ];
  legend.forEach((item, i) => {
    const col = i % 3;
    const row = Math.floor(i / 3);
    const lx = M.left + col * 310;
    const ly = M.top + plotH + 50 + row * 16;
    out.push(item.draw(lx, ly), `<text x="${lx + 24}" y="${ly + 4}">${esc(item.label)}</text>`);
  });

  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
