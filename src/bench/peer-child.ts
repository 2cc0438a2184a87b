/**
 * The llama.cpp side of `bench model`, run in a child process forked by peer.ts: llama.cpp's
 * native addon and this project's wasm runtime crash when they share one process.
 *
 * The model stays loaded across rounds; each round starts from an empty KV cache and times only
 * evaluation. Messages (Node IPC): load -> loaded, run -> result, exit. Errors come back as
 * { type: 'error' } and end the child.
 *
 * Bindings, imported dynamically so that the package runs without them:
 * - node-llama-cpp (preferred): prebuilt llama.cpp CPU builds per instruction set, one picked at
 *   load. Takes token ids; greedy tokens stream from `sequence.evaluate`, so prefill is the time
 *   to the first token and decode the time from the first to the last.
 * - @fugood/llama.node (fallback): its linux-x64 build has no AVX code (FACTS.md), and it takes
 *   text only, so the ids are detokenized and llama.cpp re-tokenizes them (checked); times are
 *   llama.cpp's own (`timings`). The context is reloaded per round so no prompt cache is reused.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, basename } from 'node:path';
import type { PeerRequest, PeerReply, PeerInfo, PeerRunResult, PeerLoadRequest } from './peer.ts';

interface Peer {
  info: PeerInfo;
  run(tokens: number[], genTokens: number): Promise<PeerRunResult>;
}

// The few parts of each binding's API used here, so that this file type-checks without them.
interface NlcToken { readonly __brand?: 'Token' }
interface NlcSequence {
  clearHistory(): Promise<void>;
  evaluate(tokens: NlcToken[], options: { temperature: number; yieldEogToken: boolean }): AsyncGenerator<NlcToken, void, void>;
}
interface NlcContext {
  getSequence(): NlcSequence;
  readonly contextSize: number;
  readonly batchSize: number;
  readonly currentThreads: number;
  readonly flashAttention: boolean | 'auto';
  readonly kvCacheKeyType: number | string;
}
interface NlcModel {
  createContext(o: { contextSize: number; threads: { ideal: number; min: number }; batchSize: number }): Promise<NlcContext>;
}
interface NlcLlama {
  readonly buildType: string;
  readonly systemInfo: string;
  readonly llamaCppRelease: { repo: string; release: string };
  loadModel(o: { modelPath: string; gpuLayers: number }): Promise<NlcModel>;
}
interface NlcModule {
  /** ggml's tensor types, a numeric enum (reverse-mapped: GgmlType[1] === 'F16'). */
  GgmlType: Record<number, string>;
  getLlama(o: { gpu: false; build: 'never'; maxThreads: number; logLevel: string }): Promise<NlcLlama>;
}

interface FugoodContext {
  tokenize(text: string): Promise<{ tokens: Int32Array }>;
  detokenize(tokens: number[]): Promise<string>;
  getSystemInfo(): string;
  completion(o: { prompt: string; n_predict: number; temperature: number; top_k: number; ignore_eos: boolean; n_probs: number }): Promise<{
    completion_probabilities?: { content: string }[];
    timings: { prompt_n: number; prompt_ms: number; predicted_n: number; predicted_ms: number };
  }>;
}
interface FugoodModule {
  loadModel(o: { model: string; n_ctx: number; n_batch: number; n_threads: number; n_gpu_layers: number }): Promise<FugoodContext>;
}

/** Version from a package's package.json, found from its resolved entry point. */
function packageVersion(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.resolve(name)));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === name) return pkg.version ?? '?';
    } catch { /* not here: go up */ }
    dir = dirname(dir);
  }
  return '?';
}

/** Which of the binding's per-ISA CPU libraries this process has mapped (e.g. libggml-cpu-zen4.so). */
function loadedCpuVariant(): string | undefined {
  try {
    const maps = readFileSync('/proc/self/maps', 'utf8');
    const libs = new Set([...maps.matchAll(/\S*libggml-cpu[^\s/]*\.so\S*/g)].map((m) => basename(m[0])));
    return libs.size ? [...libs].join(', ') : undefined;
  } catch {
    return undefined;
  }
}

function typeName(m: NlcModule, t: number | string): string {
  return typeof t === 'number' ? m.GgmlType[t] ?? `ggml type ${t}` : t;
}

async function loadNodeLlamaCpp(m: NlcModule, req: PeerLoadRequest): Promise<Peer> {
  const llama = await m.getLlama({ gpu: false, build: 'never', maxThreads: req.threads, logLevel: 'error' });
  const model = await llama.loadModel({ modelPath: req.gguf, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: req.contextTokens, threads: { ideal: req.threads, min: req.threads }, batchSize: req.batchTokens });
  const sequence = context.getSequence();
  const variant = loadedCpuVariant();
  const features = /CPU : (.*)/.exec(llama.systemInfo)?.[1]?.replace(/ = 1/g, '').replace(/\s*\|\s*/g, ' ').trim();
  const info: PeerInfo = {
    binding: 'node-llama-cpp',
    version: packageVersion('node-llama-cpp'),
    build: `${llama.buildType} ${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}${variant ? `, CPU variant ${variant}` : ''}`,
    cpuFeatures: features ?? llama.systemInfo,
    threads: context.currentThreads,
    kvCache: `${typeName(m, context.kvCacheKeyType)}, flash attention ${String(context.flashAttention)}`,
    batchTokens: context.batchSize,
  };
  return {
    info,
    async run(tokens, genTokens) {
      await sequence.clearHistory();
      const generated: number[] = [];
      const t0 = performance.now();
      let tFirst = t0;
      let tLast = t0;
      for await (const token of sequence.evaluate(tokens as unknown as NlcToken[], { temperature: 0, yieldEogToken: true })) {
        tLast = performance.now();
        if (generated.length === 0) tFirst = tLast;
        generated.push(token as unknown as number);
        if (generated.length >= genTokens) break;
      }
      // The first token comes out of the prompt's forward pass; each later one costs a decode step.
      return { prefillMs: tFirst - t0, decodeMs: tLast - tFirst, promptTokens: tokens.length, decodeSteps: generated.length - 1, generated };
    },
  };
}

async function loadFugood(m: FugoodModule, req: PeerLoadRequest): Promise<Peer> {
  const load = (): Promise<FugoodContext> =>
    m.loadModel({ model: req.gguf, n_ctx: req.contextTokens, n_batch: req.batchTokens, n_threads: req.threads, n_gpu_layers: 0 });
  let ctx = await load();
  const features = /CPU : (.*)/.exec(ctx.getSystemInfo())?.[1]?.replace(/ = 1/g, '').replace(/\s*\|\s*/g, ' ').trim();
  let fresh = true;
  return {
    info: {
      binding: '@fugood/llama.node',
      version: packageVersion('@fugood/llama.node'),
      build: 'prebuilt linux-x64 (no AVX kernels: not a fair speed peer)',
      cpuFeatures: features ?? ctx.getSystemInfo(),
      threads: req.threads,
      kvCache: 'F16 (default)',
      batchTokens: req.batchTokens,
    },
    async run(tokens, genTokens) {
      // A fresh context per round: the binding reuses a matching prompt prefix otherwise.
      if (!fresh) ctx = await load();
      fresh = false;
      const prompt = await ctx.detokenize(tokens);
      const again = Array.from((await ctx.tokenize(prompt)).tokens);
      const same = again.length === tokens.length && again.every((t, i) => t === tokens[i]);
      const r = await ctx.completion({ prompt, n_predict: genTokens, temperature: 0, top_k: 1, ignore_eos: true, n_probs: 0 });
      return {
        prefillMs: r.timings.prompt_ms,
        decodeMs: r.timings.predicted_ms,
        promptTokens: r.timings.prompt_n,
        decodeSteps: r.timings.predicted_n,
        generated: [],
        note: !same ? `llama.cpp re-tokenized the prompt to ${again.length} tokens (ours ${tokens.length})`
          : r.timings.prompt_n !== tokens.length ? `llama.cpp evaluated ${r.timings.prompt_n} prompt tokens (the binding adds BOS to a text prompt), ours ${tokens.length}`
          : undefined,
      };
    },
  };
}

async function loadPeer(req: PeerLoadRequest): Promise<{ peer: Peer; warning?: string }> {
  let reason = '';
  try {
    const m = (await import('node-llama-cpp' as string)) as NlcModule;
    return { peer: await loadNodeLlamaCpp(m, req) };
  } catch (e) {
    reason = (e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' ? 'node-llama-cpp is not installed' : `node-llama-cpp failed: ${(e as Error).message}`;
  }
  let m: FugoodModule;
  try {
    m = (await import('@fugood/llama.node' as string)) as FugoodModule;
  } catch {
    throw new Error(`${reason}, and @fugood/llama.node is not installed either: \`npm install --save-dev node-llama-cpp\` to run the peer`);
  }
  return {
    peer: await loadFugood(m, req),
    warning: `${reason}; falling back to @fugood/llama.node, whose linux-x64 build has no AVX kernels: its figures understate llama.cpp (install node-llama-cpp for a fair peer)`,
  };
}

/** Resolves once the message is handed to the channel, so an exit right after it does not drop it. */
const send = (msg: PeerReply): Promise<void> => new Promise((resolve) => { process.send?.(msg, undefined, undefined, () => resolve()) ?? resolve(); });

let peer: Peer | null = null;
process.on('message', (raw) => {
  const req = raw as PeerRequest;
  void (async () => {
    try {
      if (req.type === 'load') {
        const t0 = performance.now();
        const loaded = await loadPeer(req);
        peer = loaded.peer;
        await send({ type: 'loaded', info: peer.info, loadMs: performance.now() - t0, warning: loaded.warning });
      } else if (req.type === 'run') {
        if (!peer) throw new Error('run before load');
        await send({ type: 'result', result: await peer.run(req.tokens, req.genTokens) });
      } else {
        // No dispose: tearing llama.cpp down is where its bindings crash; the OS frees everything.
        process.exit(0);
      }
    } catch (e) {
      await send({ type: 'error', message: (e as Error).message });
      process.exit(1);
    }
  })();
});
process.on('disconnect', () => process.exit(0));
