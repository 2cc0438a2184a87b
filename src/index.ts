export { Engine, readModelConfig } from './engine/engine.ts';
export type {
  EngineOptions, GenerateOptions, GenerateEvent, GenerateStats, Generation, PromptInput, ChatMessage, FinishReason, LoadProgress,
} from './engine/engine.ts';
export { Sampler, type SamplingOptions } from './engine/sampling.ts';
export { planWasmMemory, type WasmMemoryPlan } from './engine/memory.ts';
export { estimateMemory, type MemoryEstimate } from './model/config.ts';
export { Runtime, type RuntimeOptions, type KernelBuild, type KernelBuildChoice } from './runtime/wasm.ts';
export { BlockPool } from './kv/pool.ts';
export { SequenceKV, HeadKV } from './kv/store.ts';
export { LlamaModel, type ForwardItem } from './model/llama.ts';
export { parseConfig, type ModelConfig } from './model/config.ts';
export { Tokenizer } from './model/tokenizer.ts';
export { exportGguf } from './model/gguf.ts';
export * from './errors.ts';

export { openModelSource, type ModelSource } from './model/source.ts';
export { readGgufHeader, type GgufHeader } from './model/gguf-reader.ts';
export { hubCacheDir, resolveModelArg } from './hub/cache.ts';

import { Engine, type EngineOptions } from './engine/engine.ts';
import { resolveModelArg } from './hub/cache.ts';

/**
 * Load a model: a GGUF file, a Hugging Face model directory, or a repo id already in the Hugging
 * Face cache (`rocketkv pull ORG/NAME`): `const llm = await loadModel('model.gguf'); for await (const t of llm.generate('Hi')) ...`
 */
export function loadModel(model: string, opts?: EngineOptions): Promise<Engine> {
  return Engine.load(resolveModelArg(model), opts);
}
