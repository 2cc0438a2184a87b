/**
 * The "why" section of the SmolLM2 results, as markdown, read from the files the why stage of
 * tools/results-smollm2.sh writes (tools/needle_survival.ts, tools/quest_bounds.ts) and the kept
 * stage's tables. Every figure is read from those files.
 *
 *   node --import tsx tools/why-summary.ts docs/results-smollm2-why
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: why-summary.ts WHY_DIR\n');
  process.exit(2);
}
const rel = basename(dir);
const files = readdirSync(dir).sort();
const out: string[] = [];
out.push('### Why methods fall short, on samples\n');
out.push('Written by the why stage of tools/results-smollm2.sh. Eviction (tools/needle_survival.ts): per layer and KV head of the first eviction, the slots kept and whether each needle value token was kept; below, the share of (layer, KV head) that kept the whole needle. Decode-time selection (the same tool, for methods with a selector): per step, the (layer, query head) pairs whose read set held the whole needle, beside the exact top of the same size (the same number of slots picked by the exact logits q.k). Quest\'s page bounds (tools/quest_bounds.ts): for heads that attend to the needle, the bound of the needle\'s pages against the last page read.\n');

for (const f of files) {
  if (!f.endsWith('.txt') || f.endsWith('-ours.txt') || f.endsWith('-kvpress.txt')) continue;
  const lines = readFileSync(join(dir, f), 'utf8').split('\n');
  const name = f.replace(/\.txt$/, '');
  if (f.startsWith('quest-bounds')) {
    out.push(`- [${name}](${rel}/${f}): ${lines[0]}`);
    // Query heads whose best needle token ranks in the top 10 by exact logit: the needle page's bound vs the cut.
    let layer = '';
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i]!;
      if (l.startsWith('layer ')) layer = l.slice(0, l.indexOf(':'));
      const m = /^ {2}query head (\d+): largest logit (\S+) .*needle logits .*, ranks (.*)$/.exec(l);
      if (!m) continue;
      const best = Math.min(...m[3]!.split(' ').map(Number));
      if (best > 10) continue;
      const cut = /the last read \(rank (\d+)\) (\S+),/.exec(lines[i + 1] ?? '');
      const pages: string[] = [];
      for (let j = i + 2; j < lines.length && lines[j]!.startsWith('    needle page'); j++) {
        const p = /needle page (\d+): bound (\S+), rank (\d+) of (\d+) \(([^)]+)\); its largest logit (\S+)/.exec(lines[j]!);
        if (p) pages.push(`page ${p[1]} bound ${p[2]} (rank ${p[3]} of ${p[4]}, ${p[5]}; its largest logit ${p[6]})`);
      }
      out.push(`  - ${layer} query head ${m[1]}: a needle token ranks ${best} by exact logit (largest logit held ${m[2]}); the last page read has bound ${cut?.[2]} (rank ${cut?.[1]}); ${pages.join('; ')}`);
    }
    continue;
  }
  const head = lines.find((l) => l.startsWith('sample ')) ?? '';
  const answer = /answer (".*")$/.exec(head)?.[1] ?? '';
  const ref = /needle (\S+) at/.exec(head)?.[1] ?? '';
  const ev = lines.filter((l) => /^ {2}layer \d+ head \d+: kept/.test(l));
  const whole = ev.filter((l) => /needle 1+ /.test(l)).length;
  const parts: string[] = [`needle ${ref}, answer ${answer.length > 60 ? answer.slice(0, 57) + '..."' : answer}`];
  if (ev.length > 0) parts.push(`eviction kept the whole needle in ${whole}/${ev.length} (layer, head)`);
  out.push(`- [${name}](${rel}/${f}): ${parts.join('; ')}`);
  const steps = lines.filter((l) => /^ {2}step \d+ -> /.test(l)).slice(0, 3);
  for (const s of steps) {
    const m = /step (\d+) -> (".*?"|\(none\)): whole needle read by (\d+\/\d+) .*same size: (\d+\/\d+)/.exec(s);
    if (m) out.push(`  - decode step ${m[1]} (produced ${m[2]}): whole needle read by ${m[3]} (layer, query head); the exact top of the same size: ${m[4]}`);
  }
}
for (const f of files) {
  if (f.startsWith('kept-') && f.endsWith('.md')) out.push(`- [${f.replace(/\.md$/, '')}](${rel}/${f}): ours beside kvpress, heads keeping the whole needle per layer (tools/kvpress/kept_sets.py reads kvpress's kept positions off its cache)`);
}
process.stdout.write(out.join('\n') + '\n');
