import { exportGguf } from '../model/gguf.ts';
import { UsageError } from '../errors.ts';
import { resolveModelOption } from './default-model.ts';
import { progressBar } from './progress.ts';

export async function exportGgufCommand(opts: { model: string; out: string; dtype: string }): Promise<void> {
  if (opts.dtype !== 'f32' && opts.dtype !== 'f16') throw new UsageError(`--dtype must be f32 or f16, got '${opts.dtype}'`);
  const model = await resolveModelOption(opts.model);
  const bar = progressBar('export');
  try {
    await exportGguf(model, opts.out, { dtype: opts.dtype, onProgress: (done, total) => bar.update(done, total) });
  } finally {
    bar.stop();
  }
  process.stderr.write(`wrote ${opts.out}\n`);
}
