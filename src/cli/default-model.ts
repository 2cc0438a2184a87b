import { access } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelLoadError } from '../errors.ts';
import { resolveModelArg } from '../hub/cache.ts';

/** Name of the bundled model directory under models/. */
export const BUNDLED_MODEL = 'rocketkv-tiny';

/**
 * The bundled tiny long-context model (models/rocketkv-tiny: a Llama trained by tools/train/ on
 * the RULER-style tasks). The same path serves the sources (src/cli) and the build (dist/cli).
 */
export function bundledModelDir(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'models', BUNDLED_MODEL);
}

/** The model used when no --model is given: the bundled one. */
export async function defaultModelDir(_log?: (s: string) => void): Promise<string> {
  const dir = bundledModelDir();
  try {
    await access(join(dir, 'model.safetensors'));
  } catch {
    throw new ModelLoadError(`the bundled model is missing from ${dir}; reinstall the package or pass --model with a Hugging Face model directory`);
  }
  return dir;
}

/** What `--model` names: a GGUF file, a model directory or a cached repo id; the bundled model when absent. */
export async function resolveModelOption(model: string | undefined): Promise<string> {
  return model === undefined ? defaultModelDir() : resolveModelArg(model);
}
