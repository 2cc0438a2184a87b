/**
 * Needle-in-a-haystack tasks (RULER scripts/data/synthetic/niah.py, configs from synthetic.yaml).
 * Needle: "One of the special magic {numbers|uuids} for {key} is: {value}." Keys are adjective-noun
 * words (or uuids), values 7-digit numbers (or uuids). Haystacks: `noise` (the fixed filler
 * paragraph repeated, one per line), `essay` (generated prose, see essay.ts; needles go between
 * sentences at depths drawn from RULER's 40-point grid), `needle` (every line a needle with other
 * keys and values). Keys within a sample are distinct, and no distractor repeats an answer value.
 */
import { essaySentences } from './essay.ts';
import { Rng } from './rng.ts';
import { largestFitting } from './sizing.ts';
import { NIAH, NIAH_NEEDLE, NOISE_FILLER, fill, singularize } from './templates.ts';
import type { GenerateSampleOptions, Sample, TaskName, TurnQuery } from './types.ts';
import { keyWordList } from './words.ts';

type NeedleType = 'numbers' | 'words' | 'uuids';

export interface NiahConfig {
  haystack: 'noise' | 'essay' | 'needle';
  keyType: NeedleType;
  valueType: NeedleType;
  numKeys: number;
  numValues: number;
  numQueries: number;
}

export const NIAH_CONFIGS = {
  niah_single_1: { haystack: 'noise', keyType: 'words', valueType: 'numbers', numKeys: 1, numValues: 1, numQueries: 1 },
  niah_single_2: { haystack: 'essay', keyType: 'words', valueType: 'numbers', numKeys: 1, numValues: 1, numQueries: 1 },
  niah_single_3: { haystack: 'essay', keyType: 'words', valueType: 'uuids', numKeys: 1, numValues: 1, numQueries: 1 },
  niah_multikey_1: { haystack: 'essay', keyType: 'words', valueType: 'numbers', numKeys: 4, numValues: 1, numQueries: 1 },
  niah_multikey_2: { haystack: 'needle', keyType: 'words', valueType: 'numbers', numKeys: 1, numValues: 1, numQueries: 1 },
  niah_multikey_3: { haystack: 'needle', keyType: 'uuids', valueType: 'uuids', numKeys: 1, numValues: 1, numQueries: 1 },
  niah_multivalue: { haystack: 'essay', keyType: 'words', valueType: 'numbers', numKeys: 1, numValues: 4, numQueries: 1 },
  niah_multiquery: { haystack: 'essay', keyType: 'words', valueType: 'numbers', numKeys: 1, numValues: 1, numQueries: 4 },
} as const satisfies Partial<Record<TaskName, NiahConfig>>;

export type NiahTask = keyof typeof NIAH_CONFIGS;

/** RULER's needle depths in percent: np.round(np.linspace(0, 100, 40)). */
const DEPTHS_PERCENT: readonly number[] = Array.from({ length: 40 }, (_, i) => Math.round((100 * i) / 39));

function randomOf(type: NeedleType, rng: Rng): string {
  switch (type) {
    case 'numbers': return String(rng.int(1_000_000, 9_999_999));
    case 'words': return rng.choice(keyWordList());
    case 'uuids': return rng.uuid();
  }
}

/** A draw of `type` not in `taken` (then added to it). */
function distinct(type: NeedleType, rng: Rng, taken: Set<string>): string {
  for (;;) {
    const v = randomOf(type, rng);
    if (!taken.has(v)) { taken.add(v); return v; }
  }
}

interface Needle { text: string; holdsFirstAnswer: boolean }

export function generateNiah(task: NiahTask, o: GenerateSampleOptions): Sample {
  const cfg: NiahConfig = NIAH_CONFIGS[task];
  const rng = Rng.forStream('ruler', task, o.seed, o.index);
  const turns = o.turns ?? 1;
  // Every turn asks about keys of its own, so a multi-turn context holds a needle for each.
  const numKeys = Math.max(cfg.numKeys, cfg.numQueries * turns);
  const singular = cfg.numQueries * cfg.numValues === 1;
  const typeV = singular ? cfg.valueType.slice(0, -1) : cfg.valueType;

  const usedKeys = new Set<string>();
  const usedValues = new Set<string>();
  const keys: string[] = [];
  const values: string[][] = [];
  const needles: { text: string; key: number; value: string }[] = [];
  for (let k = 0; k < numKeys; k++) {
    keys.push(distinct(cfg.keyType, rng, usedKeys));
    const vs: string[] = [];
    for (let v = 0; v < cfg.numValues; v++) {
      const value = distinct(cfg.valueType, rng, usedValues);
      vs.push(value);
      needles.push({ text: fill(NIAH_NEEDLE, { type_needle_v: cfg.valueType, key: keys[k]!, value }), key: k, value });
    }
    values.push(vs);
  }
  rng.shuffle(needles);

  const allQueryIdx = rng.sample(Array.from({ length: numKeys }, (_, i) => i), cfg.numQueries * turns);
  const turnIdx = Array.from({ length: turns }, (_, t) => allQueryIdx.slice(t * cfg.numQueries, (t + 1) * cfg.numQueries));
  const queryOf = (idx: number[]): string => {
    const qs = idx.map((i) => keys[i]!);
    return qs.length > 1 ? `${qs.slice(0, -1).join(', ')}, and ${qs[qs.length - 1]}` : qs[0]!;
  };
  const references = turnIdx[0]!.flatMap((i) => values[i]!);
  const placed: Needle[] = needles.map((n) => ({ text: n.text, holdsFirstAnswer: n.value === references[0] }));

  // Where each needle goes, drawn once so that the text at every haystack size comes from the same draws.
  const essayDepths = o.depth !== undefined ? placed.map(() => o.depth!) : rng.sample(DEPTHS_PERCENT, placed.length).map((d) => d / 100);
  const lineFractions = placed.map(() => rng.next());

  // Distractor needle lines for the `needle` haystack: a prefix-stable stream, so line i never changes with n.
  const hayRng = Rng.forStream('ruler', task, o.seed, o.index, 'haystack');
  const distractors: string[] = [];
  const distractor = (i: number): string => {
    while (distractors.length <= i) {
      const key = distinct(cfg.keyType, hayRng, usedKeys);
      const value = distinct(cfg.valueType, hayRng, usedValues);
      distractors.push(fill(NIAH_NEEDLE, { type_needle_v: cfg.valueType, key, value }));
    }
    return distractors[i]!;
  };

  const build = (n: number): { haystack: string; depth: number } => {
    if (cfg.haystack === 'essay') {
      const sents = essaySentences(n);
      // Needles in shuffled order go to the sorted positions, as in RULER.
      const order = essayDepths.map((d, i) => ({ d, pos: Math.floor(sents.length * d), i })).sort((a, b) => a.pos - b.pos || a.i - b.i);
      const parts: string[] = [];
      let last = 0;
      let depth = 0;
      order.forEach((p, j) => {
        if (p.pos > last) parts.push(sents.slice(last, p.pos).join(' '));
        last = p.pos;
        parts.push(placed[j]!.text);
        if (placed[j]!.holdsFirstAnswer) depth = p.d;
      });
      if (sents.length > last) parts.push(sents.slice(last).join(' '));
      return { haystack: parts.join(' '), depth };
    }
    const lines: string[] = [];
    for (let i = 0; i < n; i++) lines.push(cfg.haystack === 'noise' ? NOISE_FILLER : distractor(i));
    const at = placed.map((_, j) => (o.depth !== undefined ? Math.round(o.depth * n) : Math.floor(lineFractions[j]! * n)));
    let depth = 0;
    // Insert from the highest index down so that earlier indices still point into the filler.
    const order = placed.map((_, j) => j).sort((a, b) => at[b]! - at[a]! || b - a);
    for (const j of order) lines.splice(at[j]!, 0, placed[j]!.text);
    placed.forEach((p, j) => { if (p.holdsFirstAnswer) depth = o.depth ?? (n > 0 ? at[j]! / n : 0); });
    return { haystack: lines.join('\n'), depth };
  };

  const tpl = singular
    ? { before: singularize(NIAH.before), after: singularize(NIAH.after), answerPrefix: singularize(NIAH.answerPrefix) }
    : NIAH;
  const turnQueries: TurnQuery[] = turnIdx.map((idx) => {
    const vars = { type_needle_v: typeV, query: queryOf(idx) };
    return { question: fill(tpl.after, vars), answerPrefix: fill(tpl.answerPrefix, vars), references: idx.flatMap((i) => values[i]!) };
  });
  const before = fill(tpl.before, { type_needle_v: typeV });
  const { question, answerPrefix } = turnQueries[0]!;
  const later = turnQueries.slice(1).map((t) => t.question + t.answerPrefix).join('');
  const tokensAt = (n: number): number => o.tokenizer.encode(before + build(n).haystack + question + answerPrefix + later).length;
  const n = largestFitting(tokensAt, o.length - NIAH.tokensToGenerate * turns, 1, task);
  const { haystack, depth } = build(n);
  const context = before + haystack;
  return {
    task, index: o.index, seed: o.seed, length: o.length,
    context, question, answerPrefix, input: context + question + answerPrefix,
    references, maxNewTokens: NIAH.tokensToGenerate, depth,
    ...(o.turns !== undefined && o.turns > 1 ? { turns: turnQueries } : {}),
  };
}
