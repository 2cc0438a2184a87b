/**
 * Messages between the HTTP thread and the engine thread (worker.ts). The engine thread owns the
 * model, the KV pool and the scheduler; the HTTP thread owns sockets, validation and metrics, so a
 * long forward call never delays a health probe, a new connection or a cancellation.
 */
import type { GenerateOptions, GenerateStats, PromptInput } from '../engine/engine.ts';
import type { WeightFormat } from '../model/weights.ts';

export interface EngineLoad {
  model: string;
  threads?: number;
  weights?: WeightFormat;
  maxContextTokens?: number;
  kvMemoryBytes?: number;
  /** Multi-turn caches kept at most (0: none), and how long an idle one is kept. */
  maxSessions?: number;
  sessionIdleMs?: number;
}

/** What the engine thread reports once the model is loaded. */
export interface ModelInfo {
  dir: string;
  maxContextTokens: number;
  weightFormat: string;
  threads: number;
  kernels: string;
  kvCapacityBytes: number;
  kvBlockBytes: number;
  layers: number;
  kvHeads: number;
  vocabSize: number;
}

/** A request's settings as they cross to the engine thread (no functions, no signal). */
export type WireGenerateOptions = Omit<GenerateOptions, 'signal' | 'onPrefillProgress' | 'from'>;

/** An error as it crosses threads: its class name decides the HTTP status. */
export interface WireError { name: string; code: string; message: string }

export type ToEngine =
  /**
   * `fitMaxTokens`: the client set no max_tokens; the request may generate as many tokens as fit the KV
   * limit (at most opts.maxTokens) rather than be refused.
   * `session`: run as a turn of this session's cached conversation when its cache can serve it. */
  | { type: 'submit'; id: number; input: PromptInput; opts: WireGenerateOptions; session?: string; fitMaxTokens?: boolean }
  | { type: 'cancel'; id: number }
  | { type: 'close' };

export type FromEngine =
  | { type: 'progress'; done: number; total: number }
  | { type: 'ready'; info: ModelInfo }
  | { type: 'load-failed'; error: WireError }
  /** The request passed every check and is queued: its prompt has this many tokens. */
  | { type: 'accepted'; id: number; promptTokens: number }
  | { type: 'token'; id: number; token: number; text: string }
  /** `cachedTokens`: prompt tokens served from the session's cache (not prefilled again). */
  | { type: 'done'; id: number; text: string; stats: GenerateStats; cachedTokens: number }
  /** `accepted` false: refused before any work (bad input, never fits, context). */
  | { type: 'failed'; id: number; accepted: boolean; error: WireError }
  | { type: 'closed' };

/** Gauges the engine thread writes after every scheduler step into shared memory, read at any time. */
export const GAUGES = ['running', 'waiting', 'blocksInUse', 'capacityBlocks', 'preemptions', 'steps'] as const;
export type GaugeName = (typeof GAUGES)[number];

export function gaugeIndex(name: GaugeName): number {
  return GAUGES.indexOf(name);
}

export function toWireError(e: unknown): WireError {
  const err = e instanceof Error ? e : new Error(String(e));
  return { name: err.name, code: (err as { code?: unknown }).code === undefined ? 'INTERNAL' : String((err as { code?: unknown }).code), message: err.message };
}
