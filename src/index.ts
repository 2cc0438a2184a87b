export { Engine, readModelConfig } from './engine/engine.ts';
export type {
  EngineOptions, GenerateOptions, GenerateEvent, GenerateStats, Generation, PromptInput, ChatMessage, FinishReason, LoadProgress,
} from './engine/engine.ts';
export { Sampler, type SamplingOptions } from './engine/sampling.ts';
export { planWasmMemory, type WasmMemoryPlan } from './engine/memory.ts';
export { estimateMemory, type MemoryEstimate } from './model/config.ts';
export { Runtime, type RuntimeOptions } from './runtime/wasm.ts';
export { BlockPool } from './kv/pool.ts';
export { SequenceKV, HeadKV } from './kv/store.ts';
export { LlamaModel, type ForwardItem } from './model/llama.ts';
export { parseConfig, type ModelConfig } from './model/config.ts';
export { Tokenizer } from './model/tokenizer.ts';
export { exportGguf } from './model/gguf.ts';
export * from './errors.ts';

import { Engine, type EngineOptions } from './engine/engine.ts';

/** Load a Hugging Face model directory: `const llm = await loadModel(dir); for await (const t of llm.generate('Hi')) ...` */
export function loadModel(dir: string, opts?: EngineOptions): Promise<Engine> {
  return Engine.load(dir, opts);
}
