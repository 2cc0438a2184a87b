import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateSample, TASKS } from '../../src/eval/ruler/index.ts';
import type { Sample, TaskName, TextTokenizer } from '../../src/eval/ruler/types.ts';
import { largestFitting } from '../../src/eval/ruler/sizing.ts';
import { essaySentences } from '../../src/eval/ruler/essay.ts';
import { NOISE_FILLER } from '../../src/eval/ruler/templates.ts';
import { UsageError } from '../../src/errors.ts';

/** Stand-in for a BPE: one token per run of word characters or per punctuation mark (~1.3 per English word). */
const wordTok: TextTokenizer = { encode: (t) => Array.from(t.match(/\w+|[^\w\s]/g) ?? [], () => 0) };
/** The byte-level tokenizer of the test checkpoints: one token per UTF-8 byte. */
const byteTok: TextTokenizer = { encode: (t) => Array.from(Buffer.from(t, 'utf8')) };

const NIAH_TASKS = TASKS.filter((t) => t.startsWith('niah_'));
const gen = (task: TaskName, length: number, extra: Partial<{ seed: number; index: number; depth: number; tokenizer: TextTokenizer }> = {}): Sample =>
  generateSample(task, { length, seed: extra.seed ?? 7, index: extra.index ?? 0, tokenizer: extra.tokenizer ?? wordTok, ...(extra.depth !== undefined ? { depth: extra.depth } : {}) });
const count = (hay: string, needle: string): number => hay.split(needle).length - 1;

test('TASKS lists the eleven RULER synthetic tasks', () => {
  assert.deepEqual([...TASKS].sort(), ['cwe', 'fwe', 'niah_multikey_1', 'niah_multikey_2', 'niah_multikey_3', 'niah_multiquery',
    'niah_multivalue', 'niah_single_1', 'niah_single_2', 'niah_single_3', 'vt']);
});

test('same options give the identical sample; another seed or index gives another', () => {
  for (const task of TASKS) {
    const a = gen(task, 2048, { seed: 1, index: 3 });
    assert.deepEqual(gen(task, 2048, { seed: 1, index: 3 }), a, task);
    assert.notEqual(gen(task, 2048, { seed: 2, index: 3 }).input, a.input, `${task}: seed`);
    assert.notEqual(gen(task, 2048, { seed: 1, index: 4 }).input, a.input, `${task}: index`);
    assert.equal(a.input, a.context + a.question + a.answerPrefix, task);
    assert.equal(a.task, task);
    assert.deepEqual([a.seed, a.index, a.length], [1, 3, 2048]);
  }
});

test('every task fills its length: input + maxNewTokens fits and is within 3% or one haystack unit', () => {
  const unitTokens = (task: TaskName, s: Sample, tok: TextTokenizer): number => {
    if (task === 'niah_single_1' || task === 'vt') return tok.encode(`${NOISE_FILLER}\n`).length;
    if (task === 'niah_multikey_2' || task === 'niah_multikey_3') return Math.max(...s.context.split('\n').slice(1, 6).map((l) => tok.encode(`${l}\n`).length));
    return 0;
  };
  const cases: [TextTokenizer, string, number][] = [[wordTok, 'word', 1024], [wordTok, 'word', 4096], [byteTok, 'byte', 1024], [byteTok, 'byte', 4096]];
  for (const [tok, name, length] of cases) {
    for (const task of TASKS) {
      const s = gen(task, length, { tokenizer: tok, index: 1 });
      const used = tok.encode(s.input).length + s.maxNewTokens;
      assert.ok(used <= length, `${task} ${name} ${length}: ${used} > ${length}`);
      const slack = Math.max(0.03 * length, unitTokens(task, s, tok));
      assert.ok(length - used <= slack, `${task} ${name} ${length}: only ${used} of ${length} used`);
    }
  }
});

test('maxNewTokens is RULER\'s tokens_to_generate', () => {
  const want: Record<string, number> = { vt: 30, cwe: 120, fwe: 50 };
  for (const task of TASKS) assert.equal(gen(task, 1024).maxNewTokens, want[task] ?? 128, task);
});

test('niah: singular template for one answer, plural otherwise, exactly as RULER rewrites it', () => {
  for (const task of ['niah_single_1', 'niah_single_2', 'niah_multikey_1', 'niah_multikey_2'] as const) {
    const s = gen(task, 1024);
    const key = /for (\S+) mentioned/.exec(s.question)![1]!;
    assert.ok(s.context.startsWith('A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about the number afterwards.\n'), task);
    assert.equal(s.question, `\nWhat is the special magic number for ${key} mentioned in the provided text?`, task);
    assert.equal(s.answerPrefix, ` The special magic number for ${key} mentioned in the provided text is`, task);
    assert.match(key, /^[a-z]+-[a-z]+$/, `${task}: adjective-noun key`);
    assert.equal(s.references.length, 1);
    assert.match(s.references[0]!, /^[1-9]\d{6}$/, `${task}: 7-digit value`);
  }
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  const s3 = gen('niah_single_3', 1024);
  assert.ok(s3.context.startsWith('A special magic uuid is hidden within the following text. Make sure to memorize it. I will quiz you about the uuid afterwards.\n'));
  assert.match(s3.answerPrefix, /^ The special magic uuid for [a-z]+-[a-z]+ mentioned in the provided text is$/);
  assert.match(s3.references[0]!, uuid);
  const k3 = gen('niah_multikey_3', 1024);
  assert.match(/for (\S+) mentioned/.exec(k3.question)![1]!, uuid, 'multikey_3 has uuid keys');
  assert.match(k3.references[0]!, uuid);

  const mv = gen('niah_multivalue', 1024);
  const key = /for (\S+) mentioned/.exec(mv.question)![1]!;
  assert.ok(mv.context.startsWith('Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you about the numbers afterwards.\n'));
  assert.equal(mv.question, `\nWhat are all the special magic numbers for ${key} mentioned in the provided text?`);
  assert.equal(mv.answerPrefix, ` The special magic numbers for ${key} mentioned in the provided text are`);
  assert.equal(mv.references.length, 4);
  for (const v of mv.references) assert.equal(count(mv.context, `One of the special magic numbers for ${key} is: ${v}.`), 1);

  const mq = gen('niah_multiquery', 1024);
  const m = /^\nWhat are all the special magic numbers for (\S+), (\S+), (\S+), and (\S+) mentioned in the provided text\?$/.exec(mq.question);
  assert.ok(m, mq.question);
  assert.equal(mq.answerPrefix, ` The special magic numbers for ${m.slice(1).join(', ').replace(/, (\S+)$/, ', and $1')} mentioned in the provided text are`);
  assert.equal(mq.references.length, 4);
  m.slice(1).forEach((k, i) => assert.equal(count(mq.context, `One of the special magic numbers for ${k} is: ${mq.references[i]}.`), 1));
});

test('niah: the queried needle is in the context once, distractor keys never repeat it', () => {
  for (const task of NIAH_TASKS) {
    for (let index = 0; index < 4; index++) {
      const s = gen(task, 4096, { index });
      for (const r of s.references) assert.equal(count(s.context, r), 1, `${task}#${index}: value ${r}`);
      assert.ok(!s.question.includes(s.references[0]!), 'the question does not give the answer away');
    }
  }
  const mk = gen('niah_multikey_1', 4096);
  assert.equal(count(mk.context, 'One of the special magic numbers for '), 4, 'multikey_1 holds four keys');
  const mk2 = gen('niah_multikey_2', 4096);
  const key = /for (\S+) mentioned/.exec(mk2.question)![1]!;
  assert.equal(count(mk2.context, ` ${key} `), 1);
  const lines = mk2.context.split('\n').slice(1);
  assert.ok(lines.length > 50 && lines.every((l) => /^One of the special magic numbers for [a-z]+-[a-z]+ is: \d{7}\.$/.test(l)), 'every line a needle');
  const n1 = gen('niah_single_1', 4096);
  assert.equal(n1.context.split('\n').filter((l) => l === NOISE_FILLER).length, n1.context.split('\n').length - 2, 'noise lines + header + needle');
});

test('niah: a needle at depth 0 sits at the start, at depth 1 at the end; random depths spread', () => {
  for (const task of ['niah_single_1', 'niah_single_2', 'niah_single_3', 'niah_multikey_2', 'niah_multikey_3'] as const) {
    for (const depth of [0, 0.5, 1]) {
      const s = gen(task, 4096, { depth });
      assert.equal(s.depth, depth);
      const header = s.context.indexOf('\n') + 1;
      const at = (s.context.indexOf(s.references[0]!) - header) / (s.context.length - header);
      assert.ok(Math.abs(at - depth) < 0.06, `${task} depth ${depth}: needle at ${at.toFixed(3)}`);
    }
  }
  const depths = Array.from({ length: 24 }, (_, index) => gen('niah_single_2', 1024, { index }).depth!);
  assert.ok(Math.min(...depths) < 0.25 && Math.max(...depths) > 0.75, `spread: ${depths.join(' ')}`);
  for (const d of depths) assert.ok(d >= 0 && d <= 1);
});

test('essay haystack: generated prose, no digits or hyphenated pairs, whole sentences', () => {
  const s = gen('niah_single_2', 4096, { depth: 0.5 });
  const hay = s.context.slice(s.context.indexOf('\n') + 1).replace(/One of the special magic number.*?\d\./g, '');
  assert.doesNotMatch(hay, /\d/);
  assert.doesNotMatch(hay, /[a-z]-[a-z]/);
  assert.ok(hay.split(/[.?;] /).length > 100, 'many sentences');
  const sents = essaySentences(50);
  assert.equal(sents.join(' ').split(' ').length, 50, 'exactly the words asked for');
  assert.match(sents[0]!, /^[A-Z][A-Za-z ,;]+[.?]$/);
});

test('vt: one chain of 4 hops in order in the noise, a one-shot example first, RULER\'s template', () => {
  const s = gen('vt', 4096);
  assert.equal(s.references.length, 5);
  for (const v of s.references) assert.match(v, /^[A-Z]{5}$/);
  assert.equal(new Set(s.references).size, 5);
  const value = /assigned the value (\d{5}) in the text above\.$/.exec(s.question)![1]!;
  assert.equal(s.question, `\nQuestion: Find all variables that are assigned the value ${value} in the text above.`);
  assert.equal(s.answerPrefix, ` Answer: According to the chain(s) of variable assignment in the text above, 5 variables are assigned the value ${value}, they are: `);
  const main = s.context.slice(s.context.lastIndexOf('Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n'));
  const positions = [main.indexOf(`\nVAR ${s.references[0]} = ${value}\n`)];
  for (let j = 1; j < 5; j++) positions.push(main.indexOf(`\nVAR ${s.references[j]} = VAR ${s.references[j - 1]} \n`));
  assert.ok(positions.every((p, j) => p > 0 && (j === 0 || p > positions[j - 1]!)), `chain in order: ${positions}`);
  assert.equal(count(main, 'VAR '), 9, 'only the chain (1 + 2 x 4 mentions)');
  // The example: a solved instance with 3-letter names and its answer.
  assert.equal(count(s.context, 'Memorize and track the chain(s)'), 2);
  const ex = /they are:  ([A-Z]{3}) ([A-Z]{3}) ([A-Z]{3}) ([A-Z]{3}) ([A-Z]{3})\n\n/.exec(s.context);
  assert.ok(ex, 'example answer');
  assert.ok(s.context.includes(`VAR ${ex[2]} = VAR ${ex[1]} `));
  // Too short for the example with a byte-level tokenizer: the task alone still fits.
  const small = gen('vt', 1024, { tokenizer: byteTok });
  assert.equal(count(small.context, 'Memorize and track the chain(s)'), 1);
  assert.ok(byteTok.encode(small.input).length + 30 <= 1024);
});

function cweCounts(s: Sample): Map<string, number> {
  const list = s.context.slice(s.context.lastIndexOf('Memorize the ones that appear most often.\n') + 42);
  const counts = new Map<string, number>();
  const items = list.split(/ ?\d+\. /).filter(Boolean);
  for (const w of items) counts.set(w, (counts.get(w) ?? 0) + 1);
  return counts;
}

test('cwe: the references are the 10 most common words (x30 vs x3 from 4096, x6 vs x1 below)', () => {
  for (const [length, hi, lo] of [[4096, 30, 3], [2048, 6, 1], [32768, 30, 3]] as const) {
    const s = gen('cwe', length);
    assert.equal(s.question, '\nQuestion: What are the 10 most common words in the above list?');
    assert.equal(s.answerPrefix, ' Answer: The top 10 words that appear most often in the list are:');
    const counts = cweCounts(s);
    assert.equal(s.references.length, 10);
    for (const r of s.references) assert.equal(counts.get(r), hi, `${length}: ${r}`);
    for (const [w, c] of counts) if (!s.references.includes(w)) assert.equal(c, lo, `${length}: ${w}`);
    assert.ok(counts.size > 20, `${length}: ${counts.size} distinct words`);
    // The numbering runs 1..N without gaps.
    const nums = [...s.context.slice(s.context.lastIndexOf('most often.\n')).matchAll(/(\d+)\. /g)].map((m) => Number(m[1]));
    assert.deepEqual(nums, nums.map((_, i) => i + 1));
  }
  // 32K words need more distinct words than are shipped: generated pseudo-words take over.
  const first = gen('cwe', 32768);
  assert.ok(cweCounts(first).size > 1000);
  // Generating a longer list first (more pseudo-words made) does not change a sample.
  gen('cwe', 262144);
  assert.deepEqual(gen('cwe', 32768), first);
  // With room, a solved example precedes the list.
  const s = gen('cwe', 4096);
  assert.match(s.context, /^Below is a numbered list of words\.[^]*most often in the list are: 1\. [a-z]+ 2\. [a-z]+ 3\. [^]*10\. [a-z]+\nBelow is a numbered list/);
});

test('fwe: coded words with zipf(2) counts, "..." most frequent, references the next three', () => {
  for (const length of [1024, 4096]) {
    const s = gen('fwe', length);
    assert.equal(s.question, "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text?");
    assert.equal(s.answerPrefix, ' Answer: According to the coded text above, the three most frequently appeared words are:');
    const words = s.context.slice('Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words. '.length).split(' ');
    const counts = new Map<string, number>();
    for (const w of words) counts.set(w, (counts.get(w) ?? 0) + 1);
    const ranked = [...counts].sort((a, b) => b[1] - a[1]);
    assert.equal(ranked[0]![0], '...');
    assert.deepEqual(ranked.slice(1, 4).map((e) => e[0]), s.references);
    assert.ok(ranked[3]![1] > (ranked[4]?.[1] ?? 0), 'no tie at rank 4');
    for (const r of s.references) assert.match(r, /^[a-z]{6}$/);
    // rank k appears floor(N k^-2 / zeta(2)) times: rank 2 about a quarter of rank 1.
    assert.ok(Math.abs(ranked[1]![1] / ranked[0]![1] - 0.25) < 0.05);
    assert.ok(counts.size <= Math.floor((length - 50) / 50), 'vocabulary (length - 50) / 50');
  }
});

test('largestFitting returns the last size that fits, checked against brute force', () => {
  const shapes: ((n: number) => number)[] = [
    (n) => 100 + 7 * n,
    (n) => 50 + Math.floor(n * 3.3) + (n % 5 === 0 ? 2 : 0),
    (n) => 10 + Math.floor(n ** 1.3),
  ];
  for (const f of shapes) {
    for (const budget of [120, 999, 4096, 100_000]) {
      let want = -1;
      for (let n = 1; f(n) <= budget; n++) want = n;
      if (want < 1) { assert.throws(() => largestFitting(f, budget, 1, 't'), UsageError); continue; }
      let calls = 0;
      const got = largestFitting((n) => { calls++; return f(n); }, budget, 1, 't');
      assert.equal(got, want, `budget ${budget}`);
      assert.ok(calls <= 20, `${calls} evaluations`);
    }
  }
});

test('a length too small for the task is a UsageError naming the task', () => {
  assert.throws(() => gen('niah_single_1', 100), (e: unknown) => e instanceof UsageError && /niah_single_1/.test(e.message));
  assert.throws(() => gen('cwe', 0), UsageError);
  assert.throws(() => gen('niah_single_1', 1024, { depth: 1.5 }), UsageError);
});

test('generation is fast at 32K with a word tokenizer', () => {
  const t0 = performance.now();
  let encodes = 0;
  const tok: TextTokenizer = { encode: (t) => { encodes++; return wordTok.encode(t); } };
  for (const task of TASKS) gen(task, 32768, { tokenizer: tok });
  assert.ok(encodes <= TASKS.length * 14, `${encodes} full encodes`);
  assert.ok(performance.now() - t0 < 5000);
});
