import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunMetrics } from './runner.ts';

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f', '#393b79', '#637939'];

function label(m: RunMetrics): string {
  return m.mode === 'query-aware' ? m.method : `${m.method} (${m.mode})`;
}

/** Markdown: one row per (task, length, mode), one column per method@budget, full first. */
export function summaryTable(results: RunMetrics[]): string {
  const cols = new Map<string, { method: string; budget: number | null }>();
  for (const r of results) cols.set(`${r.method}@${r.budget ?? 'full'}`, { method: r.method, budget: r.budget });
  const colKeys = [...cols.keys()].sort((a, b) => {
    const A = cols.get(a)!;
    const B = cols.get(b)!;
    if (A.method === 'full') return -1;
    if (B.method === 'full') return 1;
    return A.method.localeCompare(B.method) || (A.budget ?? 0) - (B.budget ?? 0);
  });
  const rows = new Map<string, Map<string, RunMetrics>>();
  for (const r of results) {
    const key = `${r.task}|${r.length}|${r.mode}`;
    if (!rows.has(key)) rows.set(key, new Map());
    rows.get(key)!.set(`${r.method}@${r.budget ?? 'full'}`, r);
  }
  const header = ['task', 'length', 'mode', ...colKeys.map((k) => (k.endsWith('@full') ? 'full' : k))];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const [key, cells] of [...rows.entries()].sort()) {
    const [task, length, mode] = key.split('|');
    lines.push(`| ${task} | ${length} | ${mode} | ${colKeys.map((k) => (cells.has(k) ? cells.get(k)!.score.toFixed(1) : '')).join(' | ')} |`);
  }
  return lines.join('\n') + '\n';
}

/** Score vs budget for one task family at one length: a line per method (and mode), full dashed. */
export function scorePlot(title: string, results: RunMetrics[]): string {
  const W = 640;
  const H = 400;
  const m = { l: 56, r: 200, t: 36, b: 48 };
  const budgets = [...new Set(results.filter((r) => r.budget !== null).map((r) => r.budget!))].sort((a, b) => a - b);
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const x = (b: number): number => (budgets.length <= 1 ? m.l + pw / 2 : m.l + (Math.log2(b / budgets[0]!) / Math.log2(budgets.at(-1)! / budgets[0]!)) * pw);
  const y = (s: number): number => m.t + ph - (s / 100) * ph;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${m.l}" y="20" font-size="14">${escapeXml(title)}</text>`,
    `<line x1="${m.l}" y1="${m.t + ph}" x2="${m.l + pw}" y2="${m.t + ph}" stroke="black"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${m.t + ph}" stroke="black"/>`,
  ];
  for (const s of [0, 25, 50, 75, 100]) {
    out.push(`<line x1="${m.l - 4}" y1="${y(s)}" x2="${m.l + pw}" y2="${y(s)}" stroke="#ddd"/><text x="${m.l - 8}" y="${y(s) + 4}" text-anchor="end">${s}</text>`);
  }
  for (const b of budgets) out.push(`<text x="${x(b)}" y="${m.t + ph + 18}" text-anchor="middle">${b}</text>`);
  out.push(`<text x="${m.l + pw / 2}" y="${H - 10}" text-anchor="middle">KV budget (tokens)</text>`);
  out.push(`<text x="16" y="${m.t + ph / 2}" transform="rotate(-90 16 ${m.t + ph / 2})" text-anchor="middle">score</text>`);
  const series = new Map<string, RunMetrics[]>();
  for (const r of results) {
    const k = label(r);
    if (!series.has(k)) series.set(k, []);
    series.get(k)!.push(r);
  }
  let i = 0;
  let legendY = m.t + 8;
  for (const [name, rs] of [...series.entries()].sort(([a], [b]) => (a.startsWith('full') ? -1 : b.startsWith('full') ? 1 : a.localeCompare(b)))) {
    const color = name.startsWith('full') ? '#000' : PALETTE[i++ % PALETTE.length]!;
    const full = rs[0]!.budget === null;
    if (full) {
      out.push(`<line x1="${m.l}" y1="${y(rs[0]!.score)}" x2="${m.l + pw}" y2="${y(rs[0]!.score)}" stroke="${color}" stroke-dasharray="6 4" stroke-width="2"/>`);
    } else {
      const pts = rs.filter((r) => r.budget !== null).sort((a, b) => a.budget! - b.budget!).map((r) => `${x(r.budget!).toFixed(1)},${y(r.score).toFixed(1)}`);
      out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
      for (const p of pts) { const [px, py] = p.split(','); out.push(`<circle cx="${px}" cy="${py}" r="3" fill="${color}"/>`); }
    }
    out.push(`<line x1="${W - m.r + 12}" y1="${legendY}" x2="${W - m.r + 36}" y2="${legendY}" stroke="${color}" stroke-width="2"${full ? ' stroke-dasharray="6 4"' : ''}/><text x="${W - m.r + 42}" y="${legendY + 4}">${escapeXml(name)}</text>`);
    legendY += 18;
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Needle depth x context length, a cell per score, for one method at one budget. */
export function heatmap(title: string, results: RunMetrics[]): string {
  const depths = [...new Set(results.map((r) => r.depth ?? 0))].sort((a, b) => a - b);
  const lengths = [...new Set(results.map((r) => r.length))].sort((a, b) => a - b);
  const cw = 64;
  const ch = 28;
  const m = { l: 70, t: 40 };
  // Wide enough for the title and the axis label even with one column.
  const W = Math.max(m.l + cw * lengths.length + 20, 12 + 7.5 * Math.max(title.length, 48));
  const H = m.t + ch * depths.length + 50;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="10" y="20" font-size="14">${escapeXml(title)}</text>`,
  ];
  depths.forEach((dp, i) => {
    out.push(`<text x="${m.l - 6}" y="${m.t + i * ch + ch / 2 + 4}" text-anchor="end">${Math.round(dp * 100)}%</text>`);
    lengths.forEach((len, j) => {
      const r = results.find((q) => (q.depth ?? 0) === dp && q.length === len);
      const s = r ? r.score : NaN;
      // Red (0) to green (100).
      const fill = Number.isNaN(s) ? '#eee' : `hsl(${(s / 100) * 120}, 70%, 55%)`;
      out.push(`<rect x="${m.l + j * cw}" y="${m.t + i * ch}" width="${cw}" height="${ch}" fill="${fill}" stroke="white"/>`);
      if (!Number.isNaN(s)) out.push(`<text x="${m.l + j * cw + cw / 2}" y="${m.t + i * ch + ch / 2 + 4}" text-anchor="middle">${s.toFixed(0)}</text>`);
    });
  });
  lengths.forEach((len, j) => out.push(`<text x="${m.l + j * cw + cw / 2}" y="${m.t + depths.length * ch + 18}" text-anchor="middle">${len}</text>`));
  out.push(`<text x="10" y="${H - 8}">columns: context length (tokens); rows: needle depth</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * One score-vs-budget plot per (task, length) that has compressed runs, written to `dir/sub/`;
 * returns the markdown image links (relative to `dir`).
 */
async function writePlots(dir: string, sub: string, results: RunMetrics[]): Promise<string[]> {
  await mkdir(join(dir, sub), { recursive: true });
  const groups = new Map<string, RunMetrics[]>();
  for (const r of results) {
    const k = `${r.task}__${r.length}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(r);
  }
  const links: string[] = [];
  for (const [k, rs] of [...groups.entries()].sort()) {
    if (!rs.some((r) => r.budget !== null)) continue;
    await writeFile(join(dir, sub, `${k}.svg`), scorePlot(k.replace('__', ' at ') + ' tokens', rs));
    links.push(`![${k}](${sub}/${k}.svg)`);
  }
  return links;
}

/** summary.md and one plot per (task, length) under `dir`. Returns the markdown. */
export async function writeReport(dir: string, results: RunMetrics[], title: string): Promise<string> {
  const plots = await writePlots(dir, 'plots', results);
  const md = `# ${title}\n\nScore: string_match_all x 100, mean over samples (greedy decoding). Columns: method@budget.\n\n${summaryTable(results)}\n${plots.join('\n\n')}\n`;
  await writeFile(join(dir, 'summary.md'), md);
  return md;
}

/** Every metrics.json under the given result directories (one level down: one folder per run). */
export async function collectResults(dirs: string[]): Promise<RunMetrics[]> {
  const { readdir, readFile } = await import('node:fs/promises');
  const out: RunMetrics[] = [];
  for (const dir of dirs) {
    for (const name of (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort()) {
      try {
        const m = JSON.parse(await readFile(join(dir, name, 'metrics.json'), 'utf8')) as RunMetrics;
        Object.defineProperty(m, 'runDir', { value: join(dir, name), enumerable: false });
        out.push(m);
      } catch {
        // an unfinished run (no metrics.json yet) or another folder: not a result
      }
    }
  }
  return out;
}

const NIAH_VT = ['niah_single_1', 'niah_single_2', 'niah_single_3', 'niah_multikey_1', 'niah_multikey_2', 'niah_multikey_3', 'niah_multivalue', 'niah_multiquery', 'vt'];

function cell(r: RunMetrics | undefined): string {
  return r ? r.score.toFixed(1) : '';
}

/** The run with the most samples (the full-KV table's choice when a cell was run more than once). */
function most(rs: RunMetrics[]): RunMetrics | undefined {
  return rs.reduce<RunMetrics | undefined>((best, r) => (!best || r.samples > best.samples ? r : best), undefined);
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/**
 * One results page: full-KV accuracy per task and length, then for each (length, budget, mode)
 * present a task x method table, then every run's table and the score-vs-budget plots
 * (written beside the page under `<name>-plots/`).
 */
export async function writeResultsPage(file: string, results: RunMetrics[], title: string, intro: string): Promise<string> {
  const { dirname, basename } = await import('node:path');
  const plotDir = `${basename(file).replace(/\.md$/, '')}-plots`;
  const tasks = [...new Set(results.map((r) => r.task))].sort((a, b) => (NIAH_VT.indexOf(a) + 1 || 99) - (NIAH_VT.indexOf(b) + 1 || 99) || a.localeCompare(b));
  const lengths = [...new Set(results.map((r) => r.length))].sort((a, b) => a - b);
  const parts: string[] = [`# ${title}\n`, intro, '\nScore: string_match_all x 100 (mean over samples of the share of reference strings found in the greedy answer).\n'];

  const fullAware = results.filter((r) => r.method === 'full' && r.mode === 'query-aware');
  if (fullAware.length) {
    parts.push('## Full KV cache\n');
    parts.push(`| task | ${lengths.map((l) => `${l} tokens`).join(' | ')} | samples |`);
    parts.push(`|---|${lengths.map(() => '---').join('|')}|---|`);
    for (const t of tasks) {
      const rs = lengths.map((l) => most(fullAware.filter((r) => r.task === t && r.length === l)));
      if (rs.every((r) => !r)) continue;
      parts.push(`| ${t} | ${rs.map(cell).join(' | ')} | ${[...new Set(rs.filter(Boolean).map((r) => r!.samples))].join('/')} |`);
    }
    const avg = lengths.map((l) => {
      const rs = NIAH_VT.map((t) => most(fullAware.filter((r) => r.task === t && r.length === l)));
      return rs.every(Boolean) ? mean(rs.map((r) => r!.score)).toFixed(1) : '';
    });
    if (avg.some((a) => a !== '')) parts.push(`| **average, niah tasks + vt** | ${avg.join(' | ')} | |`);
    parts.push('');
  }

  // Method comparisons: one table per (length, budget, mode) with more than full in it.
  const combos = new Map<string, { length: number; budget: number; mode: string }>();
  for (const r of results) if (r.budget !== null) combos.set(`${r.length}|${r.budget}|${r.mode}`, { length: r.length, budget: r.budget, mode: r.mode });
  for (const c of [...combos.values()].sort((a, b) => b.length - a.length || a.budget - b.budget || a.mode.localeCompare(b.mode))) {
    const rs = results.filter((r) => r.length === c.length && r.mode === c.mode && (r.budget === c.budget || r.method === 'full'));
    const methods = [...new Set(rs.map((r) => r.method))].sort((a, b) => (a === 'full' ? -1 : b === 'full' ? 1 : a.localeCompare(b)));
    const ts = tasks.filter((t) => rs.some((r) => r.task === t && r.method !== 'full'));
    if (methods.length < 2 || ts.length === 0) continue;
    // Several full runs of one task can exist (e.g. 100 samples for the full-KV table, 30 beside the
    // methods): the column shows the one on the same samples as the methods of its row.
    const pick = (t: string, m: string): RunMetrics | undefined => {
      const all = rs.filter((r) => r.task === t && r.method === m);
      if (m !== 'full' || all.length < 2) return all[0];
      const n = rs.find((r) => r.task === t && r.method !== 'full')?.samples;
      return all.find((r) => r.samples === n) ?? all[0];
    };
    const shown = ts.flatMap((t) => methods.map((m) => pick(t, m))).filter((r): r is RunMetrics => r !== undefined);
    parts.push(`## ${c.length} tokens, KV budget ${c.budget}, ${c.mode}\n`);
    parts.push(`| task | ${methods.join(' | ')} |`);
    parts.push(`|---|${methods.map(() => '---').join('|')}|`);
    for (const t of ts) parts.push(`| ${t} | ${methods.map((m) => cell(pick(t, m))).join(' | ')} |`);
    const kvRow = methods.map((m) => {
      const xs = shown.filter((r) => r.method === m);
      return xs.length ? `${(mean(xs.map((r) => r.storedKvBytes)) / 1024).toFixed(0)} KiB` : '';
    });
    const readRow = methods.map((m) => {
      const xs = shown.filter((r) => r.method === m);
      return xs.length ? `${(mean(xs.map((r) => r.readBytesPerStep)) / 1024).toFixed(0)} KiB` : '';
    });
    parts.push(`| *KV stored (mean)* | ${kvRow.join(' | ')} |`);
    parts.push(`| *KV read per decode step (mean)* | ${readRow.join(' | ')} |`);
    parts.push(`\nSamples per cell: ${[...new Set(shown.map((r) => r.samples))].join('/')}; seed ${[...new Set(shown.map((r) => r.seed))].join('/')}.\n`);
  }

  // One task at many budgets: a method x budget table per (task, length, mode) reads better.
  const grids = new Map<string, RunMetrics[]>();
  for (const r of results) {
    const k = `${r.task}|${r.length}|${r.mode}`;
    if (!grids.has(k)) grids.set(k, []);
    grids.get(k)!.push(r);
  }
  for (const [k, rs] of [...grids.entries()].sort()) {
    const budgets = [...new Set(rs.filter((r) => r.budget !== null).map((r) => r.budget!))].sort((a, b) => a - b);
    if (budgets.length < 2) continue;
    const [task, length, mode] = k.split('|');
    const methods = [...new Set(rs.filter((r) => r.budget !== null).map((r) => r.method))].sort();
    const full = most(rs.filter((r) => r.method === 'full'));
    const at = (m: string, b: number) => rs.find((r) => r.method === m && r.budget === b);
    parts.push(`## ${task} at ${length} tokens, ${mode}: every method by KV budget\n`);
    // Every run without a budget (ours, and another library's uncompressed run) heads the table.
    const uncompressed = [...new Set(rs.filter((r) => r.budget === null).map((r) => r.method))]
      .map((m) => most(rs.filter((r) => r.method === m && r.budget === null))!)
      .map((r) => `${r.method} ${r.score.toFixed(1)} (${r.samples} samples)`);
    parts.push(`Full cache: ${uncompressed.length ? uncompressed.join(', ') : 'not run'}. Cells: score; samples per cell: ${[...new Set(rs.map((r) => r.samples))].join('/')}.\n`);
    parts.push(`| method | ${budgets.join(' | ')} |`);
    parts.push(`|---|${budgets.map(() => '---').join('|')}|`);
    for (const m of methods) parts.push(`| ${m} | ${budgets.map((b) => cell(at(m, b))).join(' | ')} |`);
    const peak = (m: string, b: number) => at(m, b)?.peakKvDecodeBytes;
    parts.push(`\nKV bytes stored at the end (mean, KiB; full: ${full ? (full.storedKvBytes / 1024).toFixed(0) : '-'}) and peak during decode:\n`);
    parts.push(`| method | ${budgets.join(' | ')} |`);
    parts.push(`|---|${budgets.map(() => '---').join('|')}|`);
    for (const m of methods) {
      parts.push(`| ${m} | ${budgets.map((b) => {
        const r = at(m, b);
        if (!r) return '';
        const p = peak(m, b);
        return `${(r.storedKvBytes / 1024).toFixed(0)}${p !== undefined ? ` / ${(p / 1024).toFixed(0)}` : ''}`;
      }).join(' | ')} |`);
    }
    parts.push('');
  }

  // Why a full-cache cell scores below 100: the first wrong answers, from the run's samples.
  const failing = fullAware.filter((r) => r.score < 100 && (r as RunMetrics & { runDir?: string }).runDir);
  if (failing.length) {
    const { readFile } = await import('node:fs/promises');
    parts.push('## Full KV cache: what the wrong answers say\n');
    parts.push('The first wrong answer of each full-cache cell below 100 (reference, then the model\'s answer), from the run\'s samples.jsonl.\n');
    parts.push('| task | length | score | reference | answer |');
    parts.push('|---|---|---|---|---|');
    for (const r of failing.sort((a, b) => a.length - b.length || a.task.localeCompare(b.task))) {
      let rows: { score: number; references: string; prediction: string }[] = [];
      try {
        rows = (await readFile(join((r as RunMetrics & { runDir: string }).runDir, 'samples.jsonl'), 'utf8')).trim().split('\n').slice(1).map((l) => JSON.parse(l));
      } catch { continue; }
      const bad = rows.find((x) => x.score < 1);
      if (!bad) continue;
      const esc = (t: string) => t.replace(/\s+/g, ' ').replace(/\|/g, '\\|').trim().slice(0, 160);
      parts.push(`| ${r.task} | ${r.length} | ${r.score.toFixed(1)} | ${esc(bad.references)} | ${esc(bad.prediction)} |`);
    }
    parts.push('');
  }

  const plots = await writePlots(dirname(file), plotDir, results);
  parts.push('## Every run\n');
  parts.push('Columns: method@budget; rows: task, length, mode.\n');
  parts.push(summaryTable(results));
  if (plots.length) parts.push(`## Score vs KV budget\n\nOne line per method (and mode), the full cache dashed.\n\n${plots.join('\n\n')}\n`);
  const md = parts.join('\n') + '\n';
  await writeFile(file, md);
  return md;
}
