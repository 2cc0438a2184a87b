import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stringMatchAll, stringMatchPart } from '../../src/eval/metrics.ts';

test('stringMatchAll: fraction of references found, case-insensitive substrings', () => {
  assert.equal(stringMatchAll('The numbers are 1234567 and 7654321.', ['1234567', '7654321']), 1);
  assert.equal(stringMatchAll('The numbers are 1234567.', ['1234567', '7654321']), 0.5);
  assert.equal(stringMatchAll('nothing here', ['1234567', '7654321', 'abc']), 0);
  assert.equal(stringMatchAll('answer: LWNYC jnkup', ['lwnyc', 'JNKUP', 'JWACC', 'TZNEL']), 0.5);
  assert.equal(stringMatchAll('anything', []), 0);
});

test('stringMatchPart: 1 when any reference is found, else 0', () => {
  assert.equal(stringMatchPart('It was PARIS.', ['paris', 'Lyon']), 1);
  assert.equal(stringMatchPart('It was Rome.', ['paris', 'Lyon']), 0);
  assert.equal(stringMatchPart('', ['a']), 0);
});
