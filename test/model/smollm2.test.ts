import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Engine } from '../../src/engine/engine.ts';
import { lookupCached } from '../../src/hub/cache.ts';
import { LOAD_SLICE_BYTES } from '../../src/model/weights.ts';
import { llamaCppGreedy, llamaCppTokenizeMany } from '../helpers/llamacpp.ts';
import { smollm2Path, SMOLLM2_SKIP, SMOLLM2_REPO, hasPythonReference, hfReference, PYTHON_SKIP } from '../helpers/smollm2.ts';

/**
 * The real model, SmolLM2-135M-Instruct (Q4_1 GGUF), against implementations we did not write:
 * llama.cpp on the same file (greedy tokens, tokenization) and Hugging Face transformers loading
 * the same file (tokenizer ids, logits at the last prompt position).
 */
const gguf = smollm2Path();
const skipModel = gguf === null ? SMOLLM2_SKIP : false;
const skipPython = skipModel || (hasPythonReference() ? false : PYTHON_SKIP);

const TEXTS = JSON.parse(readFileSync(fileURLToPath(new URL('../fixtures/tokenizer-texts.json', import.meta.url)), 'utf8')) as string[];
const GREEDY_TOKENS = 16;
/** llama.cpp's top-2 probabilities at a first difference must be this close (absolute). */
const TOP2_GAP = 0.01;
/**
 * Logits: both sides dequantize the same Q4_1 weights to f32 and compute in f32; only summation
 * order differs, over 30 layers. Largest absolute difference allowed at the last position.
 */
const LOGIT_TOLERANCE = 1e-3;

let engine: Engine;
before(async () => {
  if (gguf) engine = await Engine.load(gguf, { threads: 2 });
});
after(async () => {
  await engine?.close();
});

const entry = fileURLToPath(new URL('../helpers/rocketkv.ts', import.meta.url));

test('run --model <repo id> --chat answers the capital of France with Paris', { skip: skipModel }, () => {
  // The repo id resolves through the hub cache, as a user names a pulled model.
  const model = lookupCached(SMOLLM2_REPO, undefined).kind === 'found' ? SMOLLM2_REPO : gguf!;
  const r = spawnSync(process.execPath, ['--import', 'tsx', entry, 'run', '--model', model, '--chat', 'What is the capital of France?', '-n', '24'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /Paris/);
});

async function greedy(prompt: string, n: number): Promise<number[]> {
  const gen = engine.generate({ tokens: engine.tokenizer.encode(prompt, { addSpecialTokens: true }) }, { maxTokens: n, temperature: 0, ignoreEos: true });
  for await (const _ of gen) { /* drain */ }
  return gen.tokens;
}

const PROMPTS: { name: string; text: () => string }[] = [
  { name: 'plain prose', text: () => 'The history of the printing press begins in' },
  { name: 'plain code', text: () => 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n' },
  { name: 'chat template', text: () => engine.tokenizer.applyChatTemplate([{ role: 'user', content: 'Give me three tips for staying healthy.' }], { addGenerationPrompt: true }) },
];

for (const p of PROMPTS) {
  test(`greedy continuation equals llama.cpp's for ${GREEDY_TOKENS} tokens, or differs only at a near tie: ${p.name}`, { skip: skipModel }, async (t) => {
    const prompt = p.text();
    const cpp = await llamaCppGreedy(gguf!, prompt, GREEDY_TOKENS);
    const ours = await greedy(prompt, GREEDY_TOKENS);
    const show = (ids: number[]): string => JSON.stringify(engine.tokenizer.decode(ids));
    t.diagnostic(`ours:      ${show(ours)} ${JSON.stringify(ours)}`);
    t.diagnostic(`llama.cpp: ${show(cpp.tokens)} ${JSON.stringify(cpp.tokens)}`);
    assert.equal(cpp.tokens.length, GREEDY_TOKENS, 'llama.cpp generated every token');
    const first = ours.findIndex((id, i) => id !== cpp.tokens[i]);
    if (first === -1) {
      t.diagnostic(`all ${GREEDY_TOKENS} tokens equal`);
      return;
    }
    // A difference is acceptable only where llama.cpp itself was torn between two tokens.
    const upTo = prompt + engine.tokenizer.decode(cpp.tokens.slice(0, first));
    const at = await llamaCppGreedy(gguf!, upTo, 1, { nProbs: 2 });
    const [a, b] = at.topProbs!;
    t.diagnostic(`first difference at token ${first}: ours ${ours[first]}, llama.cpp ${cpp.tokens[first]}; llama.cpp top-2 there ${a!.id}:${a!.prob.toFixed(4)} ${b!.id}:${b!.prob.toFixed(4)}`);
    assert.ok(first >= 1, 'the first token must agree');
    assert.ok(a!.prob - b!.prob <= TOP2_GAP, `llama.cpp's top-2 are ${(a!.prob - b!.prob).toFixed(4)} apart at the first difference (allowed ${TOP2_GAP})`);
    assert.ok([a!.id, b!.id].includes(ours[first]!), 'our token is one of llama.cpp\'s top two');
  });
}

test('tokenizer ids equal llama.cpp\'s on every test text', { skip: skipModel }, async (t) => {
  const nonEmpty = TEXTS.filter((s) => s !== '');
  const cpp = await llamaCppTokenizeMany(gguf!, nonEmpty);
  let equal = 0;
  nonEmpty.forEach((text, i) => {
    assert.deepEqual(engine.tokenizer.encode(text, { addSpecialTokens: false }), cpp[i], `text ${JSON.stringify(text)}`);
    equal++;
  });
  assert.deepEqual(engine.tokenizer.encode('', { addSpecialTokens: false }), []);
  t.diagnostic(`${equal} of ${nonEmpty.length} texts tokenize identically`);
  // The smollm pre-tokenizer decodes without llama.cpp's space clean-up: text comes back as it was.
  for (const text of [...nonEmpty, "Hello , world . I 'm here", "x = ' ' + y"]) {
    assert.equal(engine.tokenizer.decode(engine.tokenizer.encode(text, { addSpecialTokens: false })), text);
  }
});

test('tokenizer ids equal transformers\' and last-position logits match transformers on the same GGUF', { skip: skipPython }, async (t) => {
  assert.ok(TEXTS.length >= 50);
  const prompts = [
    engine.tokenizer.encode('The capital of France is', { addSpecialTokens: true }),
    engine.tokenizer.encodeChat([{ role: 'user', content: 'What is the capital of France?' }]),
    engine.tokenizer.encode('def fibonacci(n):\n    if n < 2:\n        return n\n    return', { addSpecialTokens: true }),
  ];
  const ref = hfReference(gguf!, TEXTS, prompts);
  TEXTS.forEach((text, i) => {
    assert.deepEqual(engine.tokenizer.encode(text, { addSpecialTokens: false }), ref.ids[i], `text ${JSON.stringify(text)}`);
  });
  t.diagnostic(`tokenizer: ${TEXTS.length} of ${TEXTS.length} texts give transformers' ids`);

  const top = (l: Float32Array, k: number): number[] => Array.from(l.keys()).sort((x, y) => l[y]! - l[x]!).slice(0, k);
  prompts.forEach((ids, i) => {
    const seq = engine.newSequence();
    const ours = engine.model.forward([{ seq, tokens: ids }])[0]!;
    seq.release();
    const theirs = ref.logits[i]!;
    assert.equal(ours.length, theirs.length);
    let maxDiff = 0;
    for (let j = 0; j < ours.length; j++) maxDiff = Math.max(maxDiff, Math.abs(ours[j]! - theirs[j]!));
    const a = top(ours, 5);
    const b = top(theirs, 5);
    const agree = a.filter((id) => b.includes(id)).length;
    t.diagnostic(`prompt ${i} (${ids.length} tokens): largest |logit difference| ${maxDiff.toExponential(3)} (tolerance ${LOGIT_TOLERANCE}); top-5 agreement ${agree}/5, same order: ${JSON.stringify(a) === JSON.stringify(b)}`);
    assert.ok(maxDiff <= LOGIT_TOLERANCE, `largest logit difference ${maxDiff}`);
    assert.equal(a[0], b[0], 'same top token');
    assert.equal(agree, 5, 'same top-5 set');
  });
});

for (const fmt of ['f32', 'q8'] as const) {
  test(`loading the GGUF as ${fmt} peaks near its final size: one slice of rows beyond the weights`, { skip: skipModel || (process.platform !== 'linux' ? 'reads /proc/self/status' : false) }, (t) => {
    const child = fileURLToPath(new URL('../helpers/load-memory-child.ts', import.meta.url));
    const r = spawnSync(process.execPath, ['--import', 'tsx', child, gguf!, fmt], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const m = JSON.parse(r.stdout) as { before: number; after: number; wasmBytes: number; allocPeak: number; weightBytes: number };
    const MiB = 2 ** 20;
    const largestF32 = 49152 * 576 * 4; // the embedding, the largest tensor, dequantized
    const rss = m.after - m.before;
    t.diagnostic(`${fmt}: weights ${(m.weightBytes / MiB).toFixed(1)} MiB; wasm allocator peak ${(m.allocPeak / MiB).toFixed(1)} MiB; peak RSS ${(m.before / MiB).toFixed(0)} MiB before loading, ${(m.after / MiB).toFixed(0)} MiB after (+${(rss / MiB).toFixed(0)} MiB = ${(rss / m.weightBytes).toFixed(2)}x the weights, the tokenizer included); the largest tensor as f32 is ${(largestF32 / MiB).toFixed(0)} MiB`);
    // In wasm memory: the weights, the runtime's scratch, and for q8 one f32 slice being quantized;
    // never a whole tensor in f32 beside them.
    assert.ok(m.allocPeak <= m.weightBytes + LOAD_SLICE_BYTES + 4 * MiB, `allocator peak ${(m.allocPeak / MiB).toFixed(1)} MiB for ${(m.weightBytes / MiB).toFixed(1)} MiB of weights`);
    // In the process: no f32 copy of a large tensor in JS on top (reads go straight to wasm memory).
    assert.ok(rss - m.allocPeak < largestF32, `${((rss - m.allocPeak) / MiB).toFixed(0)} MiB beyond wasm memory while loading`);
  });
}
