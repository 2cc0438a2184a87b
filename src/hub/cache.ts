/**
 * The Hugging Face hub cache, read synchronously: where it is, and which file or directory of a
 * cached repo `--model ORG/NAME[:FILE]` means. The layout is Python huggingface_hub's, so files
 * pulled by either are shared:
 *
 *   $HF_HUB_CACHE/models--ORG--NAME/blobs/<etag>                       the bytes (etag: LFS sha256 or git blob sha1)
 *   $HF_HUB_CACHE/models--ORG--NAME/snapshots/<commit>/<file>          -> ../../blobs/<etag>
 *   $HF_HUB_CACHE/models--ORG--NAME/refs/<revision>                    the commit a branch or tag pointed at
 *
 * $HF_HUB_CACHE defaults to $HF_HOME/hub, $HF_HOME to $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { HubError, ModelLoadError } from '../errors.ts';

export type Env = NodeJS.ProcessEnv;

/** Quantizations `pull` and `--model ORG/NAME` take when a repo holds several .gguf files, best first. */
export const PREFERRED_QUANTS = ['Q8_0', 'Q4_K_M'] as const;

const COMMIT = /^[0-9a-f]{40}$/;
// Hub repo ids: namespace/name of letters, digits, '-', '_', '.', not starting with '.' or '-'.
const REPO_REF = /^([A-Za-z0-9_][A-Za-z0-9_.-]*\/[A-Za-z0-9_][A-Za-z0-9_.-]*)(?::(.+))?$/;

function expandUser(p: string): string {
  return p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : p;
}

/** The hub cache directory, as Python huggingface_hub computes it. */
export function hubCacheDir(env: Env = process.env): string {
  const explicit = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  if (explicit) return expandUser(explicit);
  const hfHome = env.HF_HOME
    ? expandUser(env.HF_HOME)
    : join(env.XDG_CACHE_HOME ? expandUser(env.XDG_CACHE_HOME) : join(homedir(), '.cache'), 'huggingface');
  return join(hfHome, 'hub');
}

/** `models--ORG--NAME` under the cache. */
export function repoCacheDir(repo: string, env: Env = process.env): string {
  return join(hubCacheDir(env), `models--${repo.split('/').join('--')}`);
}

export function isCommitHash(revision: string): boolean {
  return COMMIT.test(revision);
}

/** `ORG/NAME` or `ORG/NAME:FILE`, or undefined when `arg` is not shaped like a repo id. */
export function parseRepoRef(arg: string): { repo: string; file?: string } | undefined {
  const m = REPO_REF.exec(arg);
  if (!m) return undefined;
  return m[2] === undefined ? { repo: m[1]! } : { repo: m[1]!, file: m[2] };
}

/**
 * Refuses a repo file name (or revision) that would land outside the cache once joined onto it:
 * `..` segments, absolute, drive or UNC paths, under POSIX and Windows rules both. The same check
 * as huggingface_hub's `_validate_relative_filename` (not exported by @huggingface/hub).
 */
export function assertSafeRepoPath(name: string, what = 'file name'): void {
  const posix = name.replace(/\\/g, '/');
  const anchored = [name, ...posix.split('/')].some((p) => p.startsWith('/') || p.startsWith('\\') || /^[a-zA-Z]:/.test(p));
  if (name === '' || posix.split('/').includes('..') || anchored || name.includes('\0')) {
    throw new HubError(`refusing ${what} '${name}': it would be written outside the hub cache (no '..' segments or absolute paths)`);
  }
}

export function isGguf(name: string): boolean {
  return name.toLowerCase().endsWith('.gguf');
}

function quantIs(name: string, quant: string): boolean {
  const base = name.slice(name.lastIndexOf('/') + 1);
  return new RegExp(`(^|[-._])${quant}([-._]|$)`, 'i').test(base);
}

/** The .gguf to take among several: the only one, else the first of PREFERRED_QUANTS held exactly once. */
export function preferredGguf(names: readonly string[]): string | undefined {
  const ggufs = names.filter(isGguf);
  if (ggufs.length === 1) return ggufs[0];
  for (const q of PREFERRED_QUANTS) {
    const hits = ggufs.filter((n) => quantIs(n, q));
    if (hits.length === 1) return hits[0];
  }
  return undefined;
}

export type CacheLookup =
  | { kind: 'found'; path: string }
  | { kind: 'missing'; what: string }
  | { kind: 'ambiguous'; choices: string[] };

function readRef(repoDir: string, revision: string): string | undefined {
  try {
    return readFileSync(join(repoDir, 'refs', revision), 'utf8').trim();
  } catch {
    return undefined;
  }
}

function listSnapshot(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).map((p) => p.split('\\').join('/'));
}

/**
 * What a repo reference means in the cache, without touching the network: the named file, else the
 * single or preferred .gguf, else the snapshot directory when it holds config.json.
 */
export function lookupCached(repo: string, file: string | undefined, revision = 'main', env: Env = process.env): CacheLookup {
  const label = file === undefined ? repo : `${repo}:${file}`;
  assertSafeRepoPath(revision, 'revision');
  const repoDir = repoCacheDir(repo, env);
  const commit = isCommitHash(revision) ? revision : readRef(repoDir, revision);
  const snapshot = commit === undefined ? undefined : join(repoDir, 'snapshots', commit);
  if (snapshot === undefined || !existsSync(snapshot)) {
    return { kind: 'missing', what: `${label}${revision === 'main' ? '' : ` at revision ${revision}`} is not in the Hugging Face cache (${hubCacheDir(env)})` };
  }
  if (file !== undefined) {
    assertSafeRepoPath(file);
    const path = join(snapshot, file);
    return existsSync(path) ? { kind: 'found', path } : { kind: 'missing', what: `${label} is not in the Hugging Face cache (${snapshot})` };
  }
  const names = listSnapshot(snapshot);
  const ggufs = names.filter(isGguf).filter((n) => existsSync(join(snapshot, n)));
  if (ggufs.length > 0) {
    const pick = preferredGguf(ggufs);
    return pick === undefined ? { kind: 'ambiguous', choices: ggufs.sort() } : { kind: 'found', path: join(snapshot, pick) };
  }
  if (existsSync(join(snapshot, 'config.json'))) return { kind: 'found', path: snapshot };
  return { kind: 'missing', what: `the cached snapshot of ${repo} (${snapshot}) holds neither a .gguf file nor config.json` };
}

/**
 * The path `--model` means: `arg` itself when it exists, else a repo id found in the hub cache
 * (`ORG/NAME` or `ORG/NAME:FILE`). Synchronous and cheap: a few stats and one small read.
 */
export function resolveModelArg(arg: string, env: Env = process.env): string {
  if (existsSync(arg)) return arg;
  const ref = parseRepoRef(arg);
  // A path-looking name (./x, /x, ~/x, x.gguf) is a missing file, not a repo id to pull.
  const pathLike = /^[./~]/.test(arg) || /\.gguf$/i.test(arg.split(':')[0]!);
  if (ref === undefined || pathLike) throw new ModelLoadError(`model path ${arg} does not exist`);
  let found: CacheLookup;
  try {
    found = lookupCached(ref.repo, ref.file, 'main', env);
  } catch (e) {
    if (e instanceof HubError) throw new ModelLoadError(e.message);
    throw e;
  }
  if (found.kind === 'found') return found.path;
  if (found.kind === 'ambiguous') {
    throw new ModelLoadError(`${arg} has several .gguf files in the Hugging Face cache (${found.choices.join(', ')}); name one with --model ${ref.repo}:FILE`);
  }
  throw new ModelLoadError(`model path ${arg} does not exist, and ${found.what}; to download it run: rocketkv pull ${arg}`);
}

/** Size of a file (following symlinks), or undefined when it is absent. */
export function fileBytes(path: string): number | undefined {
  try {
    const s = statSync(path);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}
