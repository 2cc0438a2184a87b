import { access } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../model/random.ts';

/**
 * Until a trained model is bundled, the default model is a small RANDOM-weight Llama checkpoint
 * generated on first use into the user's cache: it exercises the whole engine, and its text is noise.
 */
export async function defaultModelDir(log: (s: string) => void): Promise<string> {
  const cache = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  const dir = join(cache, 'rocketkv', 'random-llama-tiny-v1');
  try {
    await access(join(dir, 'model.safetensors'));
  } catch {
    log(`rocketkv: no --model given; generating the default RANDOM-weight test model in ${dir} (its output is noise)`);
    await writeRandomCheckpoint(dir, {
      architecture: 'llama',
      hiddenSize: 256,
      intermediateSize: 768,
      numLayers: 4,
      numHeads: 8,
      numKvHeads: 2,
      vocab: 'bytes',
      maxPositionEmbeddings: 8192,
      tieWordEmbeddings: true,
      dtype: 'F32',
      seed: 1,
    });
  }
  return dir;
}
