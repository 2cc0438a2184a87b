/**
 * Runs in a child process spawned by llamacpp.ts: llama.cpp's native addon and this project's
 * wasm runtime crash intermittently when they share one process, so they never do.
 *
 * llama.cpp (via @fugood/llama.node) as a reference implementation for parity tests.
 * The binding takes prompts as text only, so llama.cpp tokenizes them itself (adding BOS when the
 * GGUF says tokenizer.ggml.add_bos_token). Generated token ids are recovered from the per-token
 * strings of completion_probabilities, mapped back through the GGUF vocabulary.
 */
import { loadModel } from '@fugood/llama.node';
import { readGgufHeader } from '../../src/model/gguf.ts';
import { byteToUnicode } from '../../src/model/random.ts';
import { renameSync, writeFileSync } from 'node:fs';

interface LlamaCppOptions {
  nCtx?: number;
  /** How many top probabilities to report for the first generated position (default 5). */
  nProbs?: number;
}

interface LlamaCppGreedyResult {
  tokens: number[];
  text: string;
  /** Full-softmax top probabilities at the first generated position, best first. */
  topProbs?: { id: number; prob: number }[];
}

type Ctx = Awaited<ReturnType<typeof loadModel>>;

async function withModel<T>(ggufPath: string, nCtx: number, fn: (ctx: Ctx) => Promise<T>): Promise<T> {
  const ctx = await loadModel({
    model: ggufPath,
    n_ctx: nCtx,
    n_threads: 2,
    n_gpu_layers: 0,
    cache_type_k: 'f32',
    cache_type_v: 'f32',
    // The plain f32 attention path: fewer conversions to disagree with a reference over.
    flash_attn_type: 'off',
  });
  // No release(): the binding's context teardown is what crashes. This process exits right after
  // writing its result, and the OS frees everything.
  return fn(ctx);
}

const TOKEN_CONTROL = 3;

/**
 * Maps llama.cpp's display string of a token (tokens_to_output_formatted_string: the token's
 * bytes as text, or "byte: \xNN" for a lone byte >= 0x80) back to its id.
 */
function pieceIndex(ggufPath: string): Map<string, number> {
  const meta = readGgufHeader(ggufPath).metadata;
  const tokens = meta.get('tokenizer.ggml.tokens') as string[];
  const types = meta.get('tokenizer.ggml.token_type') as number[];
  const unicodeToByte = new Map<string, number>();
  byteToUnicode().forEach((ch, b) => unicodeToByte.set(ch, b));
  const index = new Map<string, number>();
  tokens.forEach((tok, id) => {
    let display: string;
    if (types[id] === TOKEN_CONTROL) {
      display = tok;
    } else {
      const bytes: number[] = [];
      for (const ch of tok) {
        const b = unicodeToByte.get(ch);
        if (b === undefined) return; // not a byte-level token; cannot be produced as a piece
        bytes.push(b);
      }
      display = bytes.length === 1 && bytes[0] >= 0x80 ? `byte: \\x${bytes[0].toString(16)}` : Buffer.from(bytes).toString('utf8');
    }
    if (!index.has(display)) index.set(display, id);
  });
  return index;
}

function idOfPiece(index: Map<string, number>, piece: string): number {
  const id = index.get(piece);
  if (id === undefined) throw new Error(`llama.cpp produced a token ${JSON.stringify(piece)} that maps to no vocabulary entry`);
  return id;
}

async function llamaCppGreedy(ggufPath: string, prompt: string, nPredict: number, opts: LlamaCppOptions = {}): Promise<LlamaCppGreedyResult> {
  const index = pieceIndex(ggufPath);
  return withModel(ggufPath, opts.nCtx ?? 512, async (ctx) => {
    const greedy = await ctx.completion({ prompt, n_predict: nPredict, temperature: 0, top_k: 1, n_probs: 1 });
    // The binding accumulates completion_probabilities across calls; this call's are the last ones.
    const perToken = greedy.completion_probabilities ?? [];
    const tokens = perToken.map((p) => idOfPiece(index, p.content));
    // Greedy sampling reports post-sampling probabilities (all 1). Temperature 1 with every
    // truncation off exposes the full softmax; the sampled token itself is ignored.
    const nProbs = opts.nProbs ?? 5;
    const dist = await ctx.completion({ prompt, n_predict: 1, temperature: 1, top_k: 0, top_p: 1, min_p: 0, typ_p: 1, n_probs: nProbs, seed: 1 });
    const first = dist.completion_probabilities?.at(-1);
    const topProbs = first?.probs.map((p) => ({ id: idOfPiece(index, p.tok_str), prob: p.prob }));
    return { tokens, text: greedy.text, topProbs };
  });
}

/** llama.cpp's tokenization of `text` (special tokens parsed, no BOS added). */
async function llamaCppTokenize(ggufPath: string, text: string): Promise<number[]> {
  return withModel(ggufPath, 64, async (ctx) => Array.from((await ctx.tokenize(text)).tokens));
}

/** Many texts with one model load. */
async function llamaCppTokenizeMany(ggufPath: string, texts: string[]): Promise<number[][]> {
  return withModel(ggufPath, 64, async (ctx) => {
    const out: number[][] = [];
    for (const text of texts) out.push(Array.from((await ctx.tokenize(text)).tokens));
    return out;
  });
}

// argv: <request JSON> <result file>
const [request, resultPath] = process.argv.slice(2) as [string, string];
const req = JSON.parse(request) as
  | { fn: 'greedy'; gguf: string; prompt: string; nPredict: number; opts?: LlamaCppOptions }
  | { fn: 'tokenize'; gguf: string; text: string }
  | { fn: 'tokenizeMany'; gguf: string; texts: string[] };
const result = req.fn === 'greedy' ? await llamaCppGreedy(req.gguf, req.prompt, req.nPredict, req.opts)
  : req.fn === 'tokenize' ? await llamaCppTokenize(req.gguf, req.text)
  : await llamaCppTokenizeMany(req.gguf, req.texts);
// Write to a temporary name and rename, so a crash never leaves half a result behind.
writeFileSync(`${resultPath}.part`, JSON.stringify(result));
renameSync(`${resultPath}.part`, resultPath);
process.exit(0);
