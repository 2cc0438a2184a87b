import { statSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { Engine } from '../engine/engine.ts';
import { scoreDuoPattern } from '../compress/duo-scoring.ts';
import { duoPatternPath } from '../compress/duo.ts';
import { UsageError } from '../errors.ts';
import { resolveModelOption } from './default-model.ts';
import { parseWeightFormat } from './common.ts';
import { progressBar } from './progress.ts';

/** `rocketkv duo-heads`: score every KV head for `duo` and store the pattern beside the model. */
export async function duoHeadsCommand(opts: { model?: string; out?: string; texts?: string; threads?: number; weights?: string }): Promise<void> {
  const dir = await resolveModelOption(opts.model);
  const texts = opts.texts === undefined ? 16 : Number(opts.texts);
  if (!Number.isInteger(texts) || texts < 1) throw new UsageError(`--texts must be a positive integer, got ${opts.texts}`);
  const out = opts.out ?? duoPatternPath(dir, statSync(dir).isFile());
  const engine = await Engine.load(dir, { threads: opts.threads, weights: parseWeightFormat(opts.weights) });
  const bar = progressBar('texts');
  try {
    const pattern = await scoreDuoPattern(engine, { texts, onProgress: (d, t) => bar.update(d, t) });
    await writeFile(`${out}.part`, JSON.stringify(pattern, null, 1) + '\n');
    await rename(`${out}.part`, out);
    const flat = pattern.scores.flat();
    process.stdout.write(`wrote ${out}: ${flat.length} KV heads scored on ${pattern.texts} texts of ${pattern.text_tokens} tokens; scores ${Math.min(...flat).toFixed(3)}..${Math.max(...flat).toFixed(3)}\n`);
  } finally {
    bar.stop();
    await engine.close();
  }
}
