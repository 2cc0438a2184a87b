import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sampler, argmax } from '../../src/engine/sampling.ts';
import { StopMatcher } from '../../src/engine/stop.ts';
import { UsageError } from '../../src/errors.ts';

test('greedy picks the argmax, ties to the lowest id', () => {
  const logits = Float32Array.from([0.1, 3, -1, 3, 2]);
  assert.equal(argmax(logits), 1);
  assert.equal(new Sampler({ temperature: 0 }).sample(logits), 1);
});

test('sampling is reproducible per seed and follows the distribution', () => {
  const logits = Float32Array.from([Math.log(0.5), Math.log(0.3), Math.log(0.2)]);
  const draw = (seed: number) => {
    const s = new Sampler({ temperature: 1, seed });
    const counts = [0, 0, 0];
    for (let i = 0; i < 20000; i++) counts[s.sample(logits)]!++;
    return counts;
  };
  assert.deepEqual(draw(7), draw(7));
  const c = draw(11);
  assert.ok(Math.abs(c[0]! / 20000 - 0.5) < 0.02, `p0 ${c[0]! / 20000}`);
  assert.ok(Math.abs(c[2]! / 20000 - 0.2) < 0.02, `p2 ${c[2]! / 20000}`);
});

test('top-k and top-p cut the candidates', () => {
  const logits = Float32Array.from([Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)]);
  const k2 = new Sampler({ temperature: 1, topK: 2, seed: 1 });
  const p = new Sampler({ temperature: 1, topP: 0.79, seed: 2 });
  for (let i = 0; i < 5000; i++) {
    assert.ok(k2.sample(logits) < 2);
    assert.ok(p.sample(logits) < 2);
  }
});

test('bad sampling options are refused', () => {
  assert.throws(() => new Sampler({ temperature: -1 }), UsageError);
  assert.throws(() => new Sampler({ topP: 0 }), UsageError);
  assert.throws(() => new Sampler({ topK: 1.5 }), UsageError);
});

test('stop strings are cut and never partly emitted', () => {
  const m = new StopMatcher(['END', '\n\n']);
  let out = '';
  for (const piece of ['Hel', 'lo E', 'N', 'X and', ' then EN', 'D more']) {
    out += m.push(piece);
    assert.ok(!out.includes('END'));
  }
  assert.ok(m.stopped);
  assert.equal(out + m.flush(), 'Hello ENX and then ');
  const n = new StopMatcher([]);
  assert.equal(n.push('abc') + n.flush(), 'abc');
});
