import cliProgress from 'cli-progress';
import { UsageError } from '../errors.ts';
import { parseRepoRef } from '../hub/cache.ts';
import type { Progress } from '../hub/download.ts';

function formatBytes(bytes: number): string {
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${(bytes / 1e3).toFixed(1)} kB`;
}

/** A byte progress bar on a terminal's stderr; otherwise a few plain lines (start, quarters, end). */
function downloadProgress(label: string, totalBytes: number): Progress {
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      { format: `${label} [{bar}] {percentage}% | {doneText}/{totalText} | ETA {eta_formatted}`, stream: process.stderr, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(done, total) {
        if (!started) { bar.start(total, done, { doneText: formatBytes(done), totalText: formatBytes(total) }); started = true; }
        bar.update(done, { doneText: formatBytes(done) });
      },
      stop() { if (started) bar.stop(); },
    };
  }
  const startMs = Date.now();
  let quartersShown = -1;
  let last = 0;
  return {
    update(done, total) {
      const quarters = total > 0 ? Math.floor((4 * done) / total) : 4;
      if (quartersShown < 0) {
        process.stderr.write(`downloading ${label} (${formatBytes(total)}${done > 0 ? `, from ${formatBytes(done)}` : ''})\n`);
      } else if (quarters > quartersShown && quarters < 4) {
        process.stderr.write(`${label}: ${quarters * 25}% (${formatBytes(done)})\n`);
      }
      quartersShown = Math.max(quartersShown, quarters);
      last = done;
    },
    stop() {
      if (last === totalBytes) process.stderr.write(`${label}: ${formatBytes(last)} in ${((Date.now() - startMs) / 1000).toFixed(1)} s\n`);
    },
  };
}

export async function pullCommand(ref: string, opts: { revision: string }): Promise<void> {
  const parsed = parseRepoRef(ref);
  if (parsed === undefined) throw new UsageError(`expected ORG/NAME or ORG/NAME:FILE, got '${ref}'`);
  // Loaded on use: the hub client is not needed by the other commands' start-up.
  const { pull } = await import('../hub/pull.ts');
  const path = await pull({
    ...parsed,
    revision: opts.revision,
    progress: downloadProgress,
    log: (line) => process.stderr.write(`rocketkv: ${line}\n`),
  });
  process.stdout.write(`${path}\n`);
}
