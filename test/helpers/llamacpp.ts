/**
 * llama.cpp (via @fugood/llama.node) as the reference implementation for parity tests, run in a
 * child process (see llamacpp-child.ts for why and for how token ids and probabilities are read).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
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

/**
 * The binding crashes now and then (a signal, most often while tearing down). A result written
 * before the crash is complete and is used; a run that wrote none is retried.
 */
async function inChild<T>(request: object, tries = 3): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'llamacpp-'));
  const out = join(dir, 'result.json');
  try {
    let failure = '';
    for (let attempt = 0; attempt < tries; attempt++) {
      let stderr = '';
      const status = await new Promise<string>((resolve, reject) => {
        const p = spawn(process.execPath, ['--import', 'tsx', child, JSON.stringify(request), out], { stdio: ['ignore', 'ignore', 'pipe'] });
        p.stderr.on('data', (b: Buffer) => { stderr = (stderr + b.toString()).slice(-4000); });
        p.on('error', reject);
        p.on('close', (code, signal) => resolve(signal ?? String(code)));
      });
      if (existsSync(out)) return JSON.parse(readFileSync(out, 'utf8')) as T;
      failure = `llama.cpp child ended with ${status} before writing a result:\n${stderr}`;
    }
    throw new Error(failure);
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

/** llama.cpp's tokenization of each text, with one model load. */
export function llamaCppTokenizeMany(ggufPath: string, texts: string[]): Promise<number[][]> {
  return inChild({ fn: 'tokenizeMany', gguf: ggufPath, texts });
}
