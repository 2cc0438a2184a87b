// Prompts of key-value lines ending in a question: the bundled model answers them with varied
// digits, so outputs change from token to token (a dropped or doubled token shows).
import type { Tokenizer } from '../../src/model/tokenizer.ts';

/** n tokens: key-value lines (seeded), then the question about one key. */
export function keyValuePrompt(tokenizer: Tokenizer, n: number, seed: number): number[] {
  const lines: string[] = [];
  for (let i = 0, chars = 0; chars < n * 4; i++) {
    const line = `Line ${i}: the value of key ${(i * 7919 + seed) % 1000} is ${(i * 104729 + seed * 31) % 100000}.`;
    lines.push(line);
    chars += line.length + 1;
  }
  const ids = tokenizer.encode(lines.join(' '));
  const question = tokenizer.encode(` What is the value of key ${(3 * 7919 + seed) % 1000}? It is`, { addSpecialTokens: false });
  return [...ids.slice(0, Math.max(1, n - question.length)), ...question];
}
