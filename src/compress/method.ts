import type { DecodeSelector, EvictionMethod, ModelShape } from './press.ts';

/** A setting of a method, validated before any work starts. */
export interface OptionSpec {
  type: 'int' | 'number' | 'boolean' | 'string';
  default: number | boolean | string;
  /** For strings: the accepted values. */
  choices?: string[];
  /** For numbers: inclusive bounds. */
  min?: number;
  max?: number;
  /** The value names a file the engine reads: settable from the command line and the library, refused over HTTP. */
  file?: boolean;
  help: string;
}

export type OptionValues = Record<string, number | boolean | string>;

/** What a method factory knows of the request and the model. */
export interface MethodContext {
  /** The user's --kv-budget in tokens (a positive integer). */
  budget: number;
  promptLength: number;
  maxNewTokens: number;
  shape: ModelShape;
  maxPositionEmbeddings: number;
  blockSlots: number;
  /** The model's RoPE inverse frequencies (after scaling), for methods that rotate queries. */
  ropeInvFreq?: Float32Array;
  /** The model's path (a GGUF file or a directory), for methods that keep files beside it (duo). */
  modelPath?: { path: string; isFile: boolean; fingerprint: string };
  /** True when the registry checks options without a model: factories must read no files. */
  validateOnly?: boolean;
}

export interface CompressionParts {
  eviction?: EvictionMethod;
  selector?: DecodeSelector;
  /**
   * 'evict' (default): the eviction plan compacts the store and frees blocks. 'view': the store
   * keeps everything and the plan becomes a per-turn filtered view that decode reads through
   * (RocketKV-MT: no memory saved, traffic only; later turns can reach tokens an earlier one dropped).
   */
  mode?: 'evict' | 'view';
}

/** A registry entry: one method name, its one-line summary, its knobs with defaults, a factory. */
export interface MethodEntry {
  name: string;
  summary: string;
  options: Record<string, OptionSpec>;
  /** `opts` holds every option, defaults filled in and types checked. */
  create(ctx: MethodContext, opts: OptionValues): CompressionParts;
}
