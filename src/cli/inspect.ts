import { planWasmMemory, WASM32_MAX_BYTES } from '../engine/memory.ts';
import { defaultWeightFormat } from '../model/weights.ts';
import { openModelSource } from '../model/source.ts';
import { quantizationMix } from '../model/gguf-config.ts';
import { ggmlType } from '../model/ggml-quants.ts';
import { fmtBytes } from '../kv/pool.ts';
import { resolveModelOption } from './default-model.ts';
import { parseWeightFormat } from './common.ts';

export async function inspectCommand(opts: { model?: string; weights?: string }): Promise<void> {
  const dir = await resolveModelOption(opts.model);
  const source = await openModelSource(dir);
  const cfg = source.config;
  const fmt = parseWeightFormat(opts.weights) ?? defaultWeightFormat(cfg);
  const est = planWasmMemory(cfg, fmt);
  const scaling = cfg.ropeScaling ? `${cfg.ropeScaling.type} x${cfg.ropeScaling.factor}` : cfg.ropeFreqFactors ? 'per-frequency factors (rope_freqs)' : 'none';
  const lines = [`model          ${dir}`];
  if (source.gguf) {
    const g = source.gguf;
    const meta = g.metadata;
    const mix = quantizationMix(g).map((m) => {
      const supported = [...Array(64).keys()].some((id) => ggmlType(id)?.name === m.type && ggmlType(id)?.supported);
      return `${m.type}: ${m.tensors} tensor${m.tensors === 1 ? '' : 's'}, ${(m.elements / 1e6).toFixed(2)}M weights${supported ? '' : ' (not supported)'}`;
    });
    lines.push(
      `format         GGUF v${g.version}, ${fmtBytes(g.fileBytes)}, ${g.tensors.length} tensors${typeof meta.get('general.name') === 'string' ? `; name "${String(meta.get('general.name'))}"` : ''}`,
      `quantization   ${mix.join('; ')}`,
      `tokenizer      ${String(meta.get('tokenizer.ggml.model') ?? 'none')}${meta.has('tokenizer.ggml.pre') ? `, pre-tokenizer ${String(meta.get('tokenizer.ggml.pre'))}` : ''}; chat template ${meta.has('tokenizer.chat_template') ? 'yes' : 'no'}`,
    );
  } else {
    lines.push('format         Hugging Face directory (config.json, safetensors)');
  }
  lines.push(
    `architecture   ${cfg.architecture}`,
    `parameters     ${(est.parameters / 1e6).toFixed(2)}M`,
    `layers         ${cfg.numLayers}, hidden ${cfg.hiddenSize}, intermediate ${cfg.intermediateSize}`,
    `attention      ${cfg.numHeads} query heads, ${cfg.numKvHeads} KV heads (GQA group ${cfg.numHeads / cfg.numKvHeads}), head dim ${cfg.headDim}${cfg.attentionBias ? ', q/k/v bias' : ''}`,
    `rope           theta ${cfg.ropeTheta}, scaling ${scaling}`,
    `context        ${cfg.maxPositionEmbeddings} tokens; vocabulary ${cfg.vocabSize}; embeddings ${cfg.tieWordEmbeddings ? 'tied' : 'untied'}`,
    `weights        ${fmt}: ${fmtBytes(est.weightBytes)} in memory (+${fmtBytes(est.loadPeakExtraBytes)} transient while loading)${source.gguf ? ' (GGUF tensors are dequantized while loading)' : ''}`,
    `KV cache       ${fmtBytes(est.kvBytesPer1kTokens)} per 1K tokens (f32, full cache)`,
    `wasm32         ${est.fits ? 'fits' : 'does NOT fit'} in ${fmtBytes(WASM32_MAX_BYTES)}: room for ${est.kvTokensThatFit} KV tokens beside the weights` +
      (est.fits ? '' : fmt === 'f32' ? ' (try --weights q8)' : ' (use a smaller model)'),
  );
  process.stdout.write(lines.join('\n') + '\n');
}
