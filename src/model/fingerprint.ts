import { createHash } from 'node:crypto';
import { open, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * A short hash that tells checkpoints apart without reading all of them: for config.json,
 * tokenizer.json and every weights file (*.safetensors, *.gguf) in the directory, its name, its size
 * and its first and last MiB. A retrained model of the same shape differs in the first MiB already.
 */
export async function modelFingerprint(modelPath: string): Promise<string> {
  const h = createHash('sha256');
  // A GGUF model is one file: it is fingerprinted alone.
  const isFile = (await stat(modelPath)).isFile();
  const dir = isFile ? dirname(modelPath) : modelPath;
  const names = isFile ? [basename(modelPath)]
    : (await readdir(dir)).filter((n) => n === 'config.json' || n === 'tokenizer.json' || n.endsWith('.safetensors') || n.endsWith('.gguf')).sort();
  const MIB = 1 << 20;
  for (const name of names) {
    const path = join(dir, name);
    const { size } = await stat(path);
    h.update(`${name}\0${size}\0`);
    const f = await open(path, 'r');
    try {
      const ranges: [number, number][] = size > 2 * MIB ? [[0, MIB], [size - MIB, MIB]] : [[0, size]];
      for (const [start, length] of ranges) {
        const buf = Buffer.alloc(length);
        await f.read(buf, 0, length, start);
        h.update(buf);
      }
    } finally {
      await f.close();
    }
  }
  return h.digest('hex').slice(0, 16);
}
