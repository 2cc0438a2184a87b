import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Runtime } from '../../src/runtime/wasm.ts';
import { Engine } from '../../src/engine/engine.ts';
import { defaultModelDir } from '../../src/cli/default-model.ts';
import { controlLayout, MAX_THREADS } from '../../src/runtime/threads.ts';
import { UsageError } from '../../src/errors.ts';

/**
 * More threads than the old fixed control block served (64 result slots, ~120 ranges): every
 * thread gets its own range and result slot, so a reduction sums every chunk and a generation
 * gives the tokens it gives on 2 threads. A count the pool cannot serve is refused, not run wrong.
 */
test('130 threads: sumF32 over every chunk and the same greedy tokens as 2 threads', async () => {
  const dir = await defaultModelDir();
  const prompt = 'The special magic number is 4720913. Remember it. What is the special magic number? It is';
  const tokens = async (threads: number) => {
    const engine = await Engine.load(dir, { threads });
    try {
      const n = 1 << 16;
      const ptr = engine.runtime.alloc(n * 4, 64);
      engine.runtime.f32(ptr, n).fill(0.5);
      const sum = engine.runtime.k.sumF32(ptr, n);
      engine.runtime.free(ptr);
      const g = engine.generate(prompt, { maxTokens: 12, temperature: 0 });
      for await (const _ of g) { /* drain */ }
      return { sum, tokens: g.tokens, threads: engine.runtime.threads };
    } finally {
      await engine.close();
    }
  };
  const two = await tokens(2);
  const many = await tokens(130);
  assert.equal(many.threads, 130);
  assert.equal(two.sum, (1 << 16) * 0.5);
  assert.equal(many.sum, two.sum, 'every chunk of the reduction is summed');
  assert.deepEqual(many.tokens, two.tokens);
});

test('thread counts the pool cannot serve are refused with a clear error', async () => {
  await assert.rejects(Runtime.create({ threads: MAX_THREADS + 1 }), (e: Error) => e instanceof UsageError && /threads must be an integer from 1 to 1024, got 1025/.test(e.message));
  await assert.rejects(Runtime.create({ threads: 0 }), UsageError);
  await assert.rejects(Runtime.create({ threads: 2.5 }), UsageError);
  // The layout gives every thread its own range and result slot, after the control fields.
  const l = controlLayout(130);
  assert.ok(l.resultsByte >= l.argsByte + 28 * 8 && l.textByte === l.resultsByte + 130 * 8 && l.argsByte >= l.ints * 4);
});
