import { estimateMemory as estimateWeights, type ModelConfig } from '../model/config.ts';
import { LOAD_SLICE_BYTES, type WeightFormat } from '../model/weights.ts';
import { WasmMemoryError } from '../errors.ts';
import { fmtBytes } from '../kv/pool.ts';

/** wasm32 linear memory: 65536 pages of 64 KiB. */
export const WASM32_MAX_BYTES = 4 * 1024 ** 3;

export interface WasmMemoryPlan {
  parameters: number;
  /** Weights in wasm memory in the chosen format. */
  weightBytes: number;
  /** f32 held in wasm memory while q8 weights are quantized: one slice of rows (LOAD_SLICE_BYTES, at least one row). */
  loadPeakExtraBytes: number;
  /** Activations of one 512-token prefill chunk. */
  activationBytes: number;
  /** f32 K and V of 1024 tokens over all layers and KV heads. */
  kvBytesPer1kTokens: number;
  /** Tokens of KV that fit beside the weights in wasm32 memory. */
  kvTokensThatFit: number;
  fits: boolean;
}

export function planWasmMemory(cfg: ModelConfig, fmt: WeightFormat, chunkTokens = 512): WasmMemoryPlan {
  const { parameterCount: params, weightBytes, kvBytesPer1kTokens } = estimateWeights(cfg, fmt);
  const D = cfg.hiddenSize;
  const loadPeakExtraBytes = fmt === 'q8' ? Math.max(LOAD_SLICE_BYTES, 4 * Math.max(D, cfg.numHeads * cfg.headDim, cfg.intermediateSize)) : 0;
  const rowFloats = 3 * D + 2 * cfg.numHeads * cfg.headDim + 2 * cfg.numKvHeads * cfg.headDim + 2 * cfg.intermediateSize;
  const activationBytes = chunkTokens * rowFloats * 4 + cfg.vocabSize * 4;
  const free = WASM32_MAX_BYTES - weightBytes - activationBytes - 64 * 1024 ** 2;
  const kvTokensThatFit = Math.max(0, Math.floor((free / kvBytesPer1kTokens) * 1024));
  const fits = weightBytes + loadPeakExtraBytes + activationBytes < WASM32_MAX_BYTES && kvTokensThatFit >= 1024;
  return { parameters: params, weightBytes, loadPeakExtraBytes, activationBytes, kvBytesPer1kTokens, kvTokensThatFit, fits };
}

/** Refuse, before loading anything, a model that cannot run in 4 GiB of wasm32 memory. */
export function checkFitsWasm(cfg: ModelConfig, fmt: WeightFormat, dir: string): WasmMemoryPlan {
  const est = planWasmMemory(cfg, fmt);
  if (!est.fits) {
    const hint = fmt === 'f32' ? ' try --weights q8, or' : '';
    throw new WasmMemoryError(
      `${dir}: ${(est.parameters / 1e6).toFixed(0)}M parameters need ${fmtBytes(est.weightBytes)} as ${fmt} weights ` +
        `(+${fmtBytes(est.loadPeakExtraBytes + est.activationBytes)} while loading and running), leaving room for ` +
        `${est.kvTokensThatFit} KV tokens in wasm32's 4 GiB;${hint} use a smaller model`,
    );
  }
  return est;
}
