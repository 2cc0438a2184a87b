/**
 * Puts the SmolLM2 section into docs/results.md: the summary sections of docs/results-smollm2.md
 * (everything but the query-aware and query-agnostic per-budget tables and the table of every run,
 * which stay on that page), one
 * heading level down, between the markers below, replacing what was there (appended at the end the
 * first time). Run by the report stages of tools/results-smollm2.sh and tools/results.sh, so
 * regenerating either page keeps the other's section.
 *
 *   node --import tsx tools/splice-results.ts [docs/results.md] [docs/results-smollm2.md]
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const target = process.argv[2] ?? 'docs/results.md';
const source = process.argv[3] ?? 'docs/results-smollm2.md';
const BEGIN = '<!-- smollm2 section: written by tools/splice-results.ts from docs/results-smollm2.md -->';
const END = '<!-- end of the smollm2 section -->';
if (!existsSync(source)) process.exit(0);
if (!existsSync(target)) {
  process.stderr.write(`splice-results: ${target} does not exist; write it first (sh tools/results.sh)\n`);
  process.exit(1);
}

const src = readFileSync(source, 'utf8').split('\n');
// Sections by level-2 heading; the page title and intro come first.
const sections: { title: string; lines: string[] }[] = [{ title: '', lines: [] }];
for (const l of src) {
  if (l.startsWith('## ')) sections.push({ title: l.slice(3), lines: [] });
  sections.at(-1)!.lines.push(l);
}
// The per-budget tables of the 4K grid stay on the full page (the by-budget tables here hold the same scores).
const skipped = (t: string): boolean => /^\d+ tokens, KV budget \d+, query-(aware|agnostic)$/.test(t) || t === 'Every run';
const intro = sections[0]!.lines.filter((l) => !l.startsWith('# '));
const body: string[] = [
  BEGIN,
  '## SmolLM2-135M-Instruct (a real pretrained model), beside NVIDIA kvpress',
  '',
  'The summary of [results-smollm2.md](results-smollm2.md) (`sh tools/results-smollm2.sh`), which also has a table per KV budget and every run.',
  ...intro,
];
for (const s of sections.slice(1)) {
  if (skipped(s.title)) continue;
  // Both pages live in docs/, so their links (plots, why files) hold as they are.
  for (const l of s.lines) body.push(/^#{2,5} /.test(l) ? `#${l}` : l);
}
body.push(END);

let page = readFileSync(target, 'utf8');
const a = page.indexOf(BEGIN);
const b = page.indexOf(END);
if (a >= 0 && b > a) page = page.slice(0, a) + body.join('\n') + page.slice(b + END.length);
else page = page.replace(/\n*$/, '\n\n') + body.join('\n') + '\n';
writeFileSync(target, page);
