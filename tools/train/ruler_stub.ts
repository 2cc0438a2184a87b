/**
 * Stand-in for src/eval/ruler/index.ts with the same Sample format, used by emit.ts only while the
 * real generators are missing. Haystacks: RULER's noise sentences, and word-salad "essays" drawn
 * from a small built-in vocabulary (generated here, nothing downloaded). Not the evaluation source.
 */
export interface TextTokenizer { encode(text: string): number[] }
export type TaskName = 'niah_single_1' | 'niah_single_2' | 'niah_single_3' | 'niah_multikey_1' | 'niah_multikey_2'
  | 'niah_multikey_3' | 'niah_multivalue' | 'niah_multiquery' | 'vt' | 'cwe' | 'fwe';
export interface Sample {
  task: TaskName; index: number; seed: number; length: number;
  context: string; question: string; answerPrefix: string; input: string;
  references: string[]; maxNewTokens: number; depth?: number;
}
export interface GenerateSampleOptions { length: number; seed: number; index: number; tokenizer: TextTokenizer; depth?: number }

export const TASKS: TaskName[] = ['niah_single_1', 'niah_single_2', 'niah_single_3', 'niah_multikey_1', 'niah_multikey_2',
  'niah_multikey_3', 'niah_multivalue', 'niah_multiquery', 'vt', 'cwe'];

const NOISE = 'The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.';
const ADJ = ['able', 'bitter', 'calm', 'dark', 'eager', 'fancy', 'gentle', 'happy', 'icy', 'jolly', 'kind', 'lazy', 'mighty',
  'noisy', 'odd', 'proud', 'quiet', 'rapid', 'silly', 'tame', 'ugly', 'vast', 'wild', 'young', 'zany', 'brave', 'clever', 'dusty'];
const NOUN = ['apple', 'bridge', 'candle', 'dragon', 'engine', 'forest', 'garden', 'hammer', 'island', 'jacket', 'kettle', 'lemon',
  'mirror', 'needle', 'orange', 'pencil', 'river', 'saddle', 'tiger', 'umbrella', 'violin', 'wagon', 'yacht', 'zebra', 'castle'];
const PROSE = ['the', 'a', 'of', 'and', 'to', 'in', 'is', 'that', 'it', 'was', 'for', 'on', 'are', 'with', 'as', 'they', 'be', 'at',
  'one', 'have', 'this', 'from', 'people', 'work', 'startup', 'idea', 'money', 'time', 'good', 'make', 'think', 'know', 'new', 'way',
  'company', 'founders', 'users', 'hard', 'thing', 'because', 'what', 'when', 'most', 'often', 'could', 'would', 'should', 'than'];

class Rng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0; }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  pick<T>(a: T[]): T { return a[this.int(a.length)]!; }
}

const key = (r: Rng): string => `${r.pick(ADJ)}-${r.pick(NOUN)}`;
const num = (r: Rng): string => String(1000000 + r.int(9000000));
const uuid = (r: Rng): string => {
  const h = (n: number): string => Array.from({ length: n }, () => '0123456789abcdef'[r.int(16)]).join('');
  return `${h(8)}-${h(4)}-${h(4)}-${h(4)}-${h(12)}`;
};

/** Largest n in [0, hi] with fits(n), by binary search (fits is monotone). */
function search(hi: number, fits: (n: number) => boolean): number {
  let lo = 0;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (fits(mid)) lo = mid; else hi = mid - 1;
  }
  return lo;
}

export function generateSample(task: TaskName, o: GenerateSampleOptions): Sample {
  const r = new Rng((o.seed * 1000003 + o.index * 7919 + o.length) >>> 0);
  const budget = (maxNew: number) => o.length - maxNew;
  if (task === 'vt') return vt(task, o, r, budget(30));
  if (task === 'cwe') return cwe(task, o, r, budget(120));
  const essay = task !== 'niah_single_1' && task !== 'niah_multikey_2' && task !== 'niah_multikey_3';
  const valueOf = task === 'niah_single_3' || task === 'niah_multikey_3' ? uuid : num;
  const keyOf = task === 'niah_multikey_3' ? uuid : key;
  const nKeys = task === 'niah_multikey_1' || task === 'niah_multiquery' ? 4 : 1;
  const nVals = task === 'niah_multivalue' ? 4 : 1;
  const keys: string[] = [];
  while (keys.length < nKeys) { const k = keyOf(r); if (!keys.includes(k)) keys.push(k); }
  const needles: { key: string; value: string }[] = [];
  for (const k of keys) for (let v = 0; v < nVals; v++) needles.push({ key: k, value: valueOf(r) });
  const queries = task === 'niah_multiquery' ? keys : [keys[0]!];
  const type = task === 'niah_single_3' || task === 'niah_multikey_3' ? 'uuids' : 'numbers';
  const one = queries.length === 1 && nVals === 1;
  const typeS = one ? type.slice(0, -1) : type;
  const q = queries.join(', ');
  const question = `\nWhat ${one ? 'is the' : 'are all the'} special magic ${typeS} for ${q} mentioned in the provided text?`;
  const answerPrefix = ` The special magic ${typeS} for ${q} mentioned in the provided text ${one ? 'is' : 'are'}`;
  const head = `Some special magic ${type} are hidden within the following text. Make sure to memorize it. I will quiz you about the ${type} afterwards.\n`;
  const depths = needles.map(() => (o.depth ?? r.next()));
  const fillSeed = r.int(2 ** 31);
  const needleText = (n: { key: string; value: string }): string => `One of the special magic ${type} for ${n.key} is: ${n.value}.`;
  // A fresh generator per build keeps every step of the size search on the same filler.
  const build = (size: number): string => {
    const f = new Rng(fillSeed);
    let units: string[];
    if (task === 'niah_multikey_2' || task === 'niah_multikey_3') {
      units = Array.from({ length: size }, () => needleText({ key: keyOf(f), value: valueOf(f) }));
    } else if (essay) {
      units = Array.from({ length: size }, (_, i) => f.pick(PROSE) + (i % 13 === 12 ? '.' : ''));
    } else units = Array.from({ length: size }, () => NOISE);
    needles.forEach((n, i) => units.splice(Math.round(depths[i]! * units.length), 0, needleText(n)));
    return head + units.join(' ');
  };
  const n = search(Math.max(1, o.length), (k) => o.tokenizer.encode(build(k) + question + answerPrefix).length <= budget(128));
  const context = build(n);
  const refs = task === 'niah_multiquery' ? needles.map((x) => x.value) : needles.filter((x) => x.key === keys[0]).map((x) => x.value);
  return { task, index: o.index, seed: o.seed, length: o.length, context, question, answerPrefix, input: context + question + answerPrefix,
    references: refs, maxNewTokens: 128, depth: depths[0] };
}

function vt(task: TaskName, o: GenerateSampleOptions, r: Rng, budget: number): Sample {
  const name = (): string => Array.from({ length: 5 }, () => 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'[r.int(26)]).join('');
  const value = String(10000 + r.int(90000));
  const vars = Array.from({ length: 5 }, name);
  const chain = [`VAR ${vars[0]} = ${value}`, ...vars.slice(1).map((v, i) => `VAR ${v} = VAR ${vars[i]}`)];
  const depths = chain.map(() => r.next()).sort((a, b) => a - b);
  const head = 'Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n';
  const question = `\nQuestion: Find all variables that are assigned the value ${value} in the text above.`;
  const answerPrefix = ` Answer: According to the chain(s) of variable assignment in the text above, 5 variables are assgined the value ${value}, they are: `;
  const build = (n: number): string => {
    const units = Array.from({ length: n }, () => NOISE);
    chain.forEach((c, i) => units.splice(Math.round(depths[i]! * units.length) + i, 0, c + '.'));
    return head + units.join(' ');
  };
  const n = search(o.length, (k) => o.tokenizer.encode(build(k) + question + answerPrefix).length <= budget);
  const context = build(n);
  return { task, index: o.index, seed: o.seed, length: o.length, context, question, answerPrefix,
    input: context + question + answerPrefix, references: vars, maxNewTokens: 30 };
}

function cwe(task: TaskName, o: GenerateSampleOptions, r: Rng, budget: number): Sample {
  const pool: string[] = [];
  while (pool.length < 400) { const w = `${r.pick(ADJ)}${r.pick(NOUN)}`; if (!pool.includes(w)) pool.push(w); }
  const common = pool.slice(0, 10);
  const head = 'Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n';
  const question = '\nQuestion: What are the 10 most common words in the above list?';
  const answerPrefix = ' Answer: The top 10 words that appear most often in the list are:';
  const build = (nRare: number): string => {
    const words: string[] = [];
    for (const w of common) for (let i = 0; i < 30; i++) words.push(w);
    for (const w of pool.slice(10, 10 + nRare)) for (let i = 0; i < 3; i++) words.push(w);
    const rr = new Rng(o.seed + o.index);
    for (let i = words.length - 1; i > 0; i--) { const j = rr.int(i + 1); [words[i], words[j]] = [words[j]!, words[i]!]; }
    return head + words.map((w, i) => `${i + 1}. ${w}`).join(' ');
  };
  const n = search(pool.length - 10, (k) => o.tokenizer.encode(build(k) + question + answerPrefix).length <= budget);
  const context = build(n);
  return { task, index: o.index, seed: o.seed, length: o.length, context, question, answerPrefix,
    input: context + question + answerPrefix, references: common, maxNewTokens: 120 };
}
