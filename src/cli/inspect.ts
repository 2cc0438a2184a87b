import { readModelConfig } from '../engine/engine.ts';
import { planWasmMemory, WASM32_MAX_BYTES } from '../engine/memory.ts';
import { defaultWeightFormat } from '../model/weights.ts';
import { fmtBytes } from '../kv/pool.ts';
import { resolveModelOption } from './default-model.ts';
import { parseWeightFormat } from './common.ts';

export async function inspectCommand(opts: { model?: string; weights?: string }): Promise<void> {
  const dir = await resolveModelOption(opts.model);
  const cfg = await readModelConfig(dir);
  const fmt = parseWeightFormat(opts.weights) ?? defaultWeightFormat(cfg);
  const est = planWasmMemory(cfg, fmt);
  const scaling = cfg.ropeScaling ? `${cfg.ropeScaling.type} x${cfg.ropeScaling.factor}` : 'none';
  const lines = [
    `model          ${dir}`,
    `architecture   ${cfg.architecture}`,
    `parameters     ${(est.parameters / 1e6).toFixed(2)}M`,
    `layers         ${cfg.numLayers}, hidden ${cfg.hiddenSize}, intermediate ${cfg.intermediateSize}`,
    `attention      ${cfg.numHeads} query heads, ${cfg.numKvHeads} KV heads (GQA group ${cfg.numHeads / cfg.numKvHeads}), head dim ${cfg.headDim}${cfg.attentionBias ? ', q/k/v bias' : ''}`,
    `rope           theta ${cfg.ropeTheta}, scaling ${scaling}`,
    `context        ${cfg.maxPositionEmbeddings} tokens; vocabulary ${cfg.vocabSize}; embeddings ${cfg.tieWordEmbeddings ? 'tied' : 'untied'}`,
    `weights        ${fmt}: ${fmtBytes(est.weightBytes)} in memory (+${fmtBytes(est.loadPeakExtraBytes)} transient while loading)`,
    `KV cache       ${fmtBytes(est.kvBytesPer1kTokens)} per 1K tokens (f32, full cache)`,
    `wasm32         ${est.fits ? 'fits' : 'does NOT fit'} in ${fmtBytes(WASM32_MAX_BYTES)}: room for ${est.kvTokensThatFit} KV tokens beside the weights` +
      (est.fits ? '' : fmt === 'f32' ? ' (try --weights q8)' : ' (use a smaller model)'),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
