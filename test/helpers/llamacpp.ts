/**
 * llama.cpp (via @fugood/llama.node) as the reference implementation for parity tests, run in a
 * child process (see llamacpp-child.ts for why and for how token ids and probabilities are read).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface LlamaCppOptions {
  nCtx?: number;
  /** How many top probabilities to report for the first generated position (default 5). */
  nProbs?: number;
}

export interface LlamaCppGreedyResult {
  tokens: number[];
  text: string;
  /** Full-softmax top probabilities at the first generated position, best first. */
  topProbs?: { id: number; prob: number }[];
}

const child = fileURLToPath(new URL('./llamacpp-child.ts', import.meta.url));

async function inChild<T>(request: object): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'llamacpp-'));
  const out = join(dir, 'result.json');
  try {
    let stderr = '';
    const code = await new Promise<number | null>((resolve, reject) => {
      const p = spawn(process.execPath, ['--import', 'tsx', child, JSON.stringify(request), out], { stdio: ['ignore', 'ignore', 'pipe'] });
      p.stderr.on('data', (b: Buffer) => { stderr = (stderr + b.toString()).slice(-4000); });
      p.on('error', reject);
      p.on('close', resolve);
    });
    if (code !== 0) throw new Error(`llama.cpp child exited with ${code}:\n${stderr}`);
    return JSON.parse(readFileSync(out, 'utf8')) as T;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function llamaCppGreedy(ggufPath: string, prompt: string, nPredict: number, opts: LlamaCppOptions = {}): Promise<LlamaCppGreedyResult> {
  return inChild({ fn: 'greedy', gguf: ggufPath, prompt, nPredict, opts });
}

/** llama.cpp's tokenization of `text` (special tokens parsed, no BOS added). */
export function llamaCppTokenize(ggufPath: string, text: string): Promise<number[]> {
  return inChild({ fn: 'tokenize', gguf: ggufPath, text });
}
