import { exportGguf } from '../model/gguf.ts';
import { UsageError } from '../errors.ts';
import { progressBar } from './progress.ts';

export async function exportGgufCommand(opts: { model: string; out: string; dtype: string }): Promise<void> {
  if (opts.dtype !== 'f32' && opts.dtype !== 'f16') throw new UsageError(`--dtype must be f32 or f16, got '${opts.dtype}'`);
  const bar = progressBar('export');
  try {
    await exportGguf(opts.model, opts.out, { dtype: opts.dtype, onProgress: (done, total) => bar.update(done, total) });
  } finally {
    bar.stop();
  }
  process.stderr.write(`wrote ${opts.out}\n`);
}
