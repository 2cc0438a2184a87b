/**
 * `pull`: a model from the Hugging Face hub into the hub cache (layout in cache.ts), returning the
 * path `--model` takes. The hub client @huggingface/hub answers the questions (modelInfo: the
 * commit a revision points at; listFiles / pathsInfo: names, sizes, LFS sha256; fileDownloadInfo:
 * the download URL and etag); transfer() in download.ts moves the bytes, resumably.
 *
 * Environment, as huggingface_hub reads it: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN
 * (sent as Bearer), HF_HUB_OFFLINE=1 (answer from the cache only), HF_HOME / HF_HUB_CACHE.
 *
 * Without a file: the single .gguf, else the preferred quantization (PREFERRED_QUANTS), else the
 * directory model (config.json, tokenizer files, *.safetensors and their index).
 */
import { fileDownloadInfo, HubApiError, InvalidApiResponseFormatError, listFiles, modelInfo, pathsInfo } from '@huggingface/hub';
import { join } from 'node:path';
import { HubError } from '../errors.ts';
import {
  assertSafeRepoPath, fileBytes, isCommitHash, isGguf, lookupCached, preferredGguf, repoCacheDir, PREFERRED_QUANTS,
  type Env,
} from './cache.ts';
import { transfer, type ExpectedBlob, type Progress } from './download.ts';
import { commitBlob, linkSnapshotFile, writeRef } from './store.ts';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** Files of a directory model, beside *.safetensors and *.safetensors.index.json. */
export const MODEL_DIR_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'chat_template.jinja'];

export interface PullOptions {
  repo: string;
  file?: string;
  /** Branch, tag or commit; default main. */
  revision?: string;
  env?: Env;
  /** A progress display per file (the label is REPO:FILE). */
  progress?: (label: string, totalBytes: number) => Progress;
  /** Notes for the user (stderr in the CLI). */
  log?: (line: string) => void;
}

interface RepoFile {
  path: string;
  size: number;
  oid?: string;
  lfs?: { oid: string; size: number };
}

interface Ctx {
  repo: string;
  revision: string;
  endpoint: string;
  token?: string;
  repoDir: string;
  opts: PullOptions;
}

export function isOffline(env: Env): boolean {
  return ['1', 'ON', 'YES', 'TRUE'].includes((env.HF_HUB_OFFLINE ?? '').toUpperCase());
}

function oneLine(s: string): string {
  const line = s.replace(/\. URL: .*$/s, '').replace(/\s+/g, ' ').trim();
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}

/** A hub answer other than 2xx, as an error saying what to do. */
function statusError(ctx: Ctx, status: number, message: string, file?: string): HubError {
  const target = file === undefined ? ctx.repo : `${ctx.repo}:${file}`;
  const says = oneLine(message);
  if ((status === 401 || status === 404) && /repository not found/i.test(says)) {
    return new HubError(`repository ${ctx.repo} not found at ${ctx.endpoint} (HTTP ${status}); check the name${ctx.token ? '' : ', or set HF_TOKEN if it is private'}`);
  }
  if (status === 401 || status === 403) {
    return new HubError(
      `${ctx.endpoint} refused access to ${target} (HTTP ${status}${says ? `: ${says}` : ''}); ` +
        (ctx.token
          ? `the token in HF_TOKEN lacks access: accept the model's license at ${ctx.endpoint}/${ctx.repo} with that account`
          : `set HF_TOKEN to an access token, and accept the model's license at ${ctx.endpoint}/${ctx.repo}`),
    );
  }
  if (status === 404) {
    if (/rev/i.test(says)) return new HubError(`revision ${ctx.revision} not found in ${ctx.repo} at ${ctx.endpoint}`);
    if (file !== undefined) return new HubError(`file ${file} not found in ${ctx.repo} at revision ${ctx.revision}`);
    return new HubError(`repository ${ctx.repo} not found at ${ctx.endpoint}`);
  }
  return new HubError(`${ctx.endpoint} answered HTTP ${status} for ${target}${says ? `: ${says}` : ''}; rerun later`);
}

/** Errors of the hub client and of fetch, as errors the user can act on. */
function hubFailure(ctx: Ctx, e: unknown, file?: string): Error {
  if (e instanceof HubError) return e;
  if (e instanceof HubApiError) return statusError(ctx, e.statusCode, e.message, file);
  if (e instanceof InvalidApiResponseFormatError) return new HubError(`unexpected answer from ${ctx.endpoint} for ${ctx.repo}: ${oneLine(e.message)}`);
  if (e instanceof TypeError && /access token/i.test(e.message)) {
    return new HubError('HF_TOKEN is not a Hugging Face access token (those start with hf_)');
  }
  if (e instanceof TypeError && e.message === 'fetch failed') {
    const cause = (e as TypeError & { cause?: { code?: string; message?: string } }).cause;
    return new HubError(
      `cannot reach ${ctx.endpoint} (${cause?.code ?? cause?.message ?? 'network error'}); check the network, set HF_ENDPOINT to a reachable mirror, or set HF_HUB_OFFLINE=1 to use cached files only`,
    );
  }
  return e as Error;
}

async function hub<T>(ctx: Ctx, call: () => Promise<T>, file?: string): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw hubFailure(ctx, e, file);
  }
}

function fromCache(repo: string, file: string | undefined, revision: string, env: Env): string {
  const found = lookupCached(repo, file, revision, env);
  if (found.kind === 'found') return found.path;
  if (found.kind === 'ambiguous') {
    throw new HubError(`${repo} has several .gguf files in the cache (${found.choices.join(', ')}); name one: rocketkv pull ${repo}:FILE`);
  }
  throw new HubError(`${found.what}, and offline mode is on (HF_HUB_OFFLINE=1); unset HF_HUB_OFFLINE to download it`);
}

function normalizeEtag(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

/** One file into blobs/ and snapshots/<commit>/, unless it is there already. */
async function pullFile(ctx: Ctx, commit: string, f: RepoFile): Promise<string> {
  assertSafeRepoPath(f.path);
  const label = `${ctx.repo}:${f.path}`;
  const bytes = f.lfs?.size ?? f.size;
  const blobName = f.lfs?.oid ?? f.oid;
  if (blobName === undefined) throw new HubError(`${ctx.endpoint} gave no object id for ${label}; cannot place it in the cache`);
  assertSafeRepoPath(blobName, 'object id');
  const pointer = join(ctx.repoDir, 'snapshots', commit, f.path);
  if (fileBytes(pointer) === bytes) return pointer;
  const blob = join(ctx.repoDir, 'blobs', blobName);
  if (fileBytes(blob) !== bytes) {
    const info = await hub(ctx, () => fileDownloadInfo({ repo: ctx.repo, path: f.path, revision: commit, hubUrl: ctx.endpoint, accessToken: ctx.token }), f.path);
    if (info === null) throw statusError(ctx, 404, '', f.path);
    if (info.size !== bytes) {
      throw new HubError(`${label}: the hub lists ${bytes} bytes but serves ${info.size} (size mismatch); rerun the command later`);
    }
    const etag = normalizeEtag(info.etag);
    const isSha256 = (s: string | undefined): s is string => s !== undefined && /^[0-9a-f]{64}$/.test(s);
    const expected: ExpectedBlob = {
      bytes,
      sha256: isSha256(f.lfs?.oid) ? f.lfs.oid : isSha256(etag) ? etag : undefined,
      gitSha1: f.lfs === undefined ? f.oid : undefined,
    };
    const incomplete = `${blob}.incomplete`;
    await hub(ctx, () => transfer({
      label, url: info.url, incomplete, expected, token: ctx.token, hubOrigin: new URL(ctx.endpoint).origin,
      progress: ctx.opts.progress?.(label, bytes), log: ctx.opts.log,
      httpError: (status, message) => statusError(ctx, status, message, f.path),
    }), f.path);
    await commitBlob(incomplete, blob);
  }
  return linkSnapshotFile(ctx.repoDir, commit, f.path, blobName);
}

function toRepoFile(e: { path: string; size: number; oid?: string; lfs?: { oid: string; size: number } }): RepoFile {
  return { path: e.path, size: e.size, oid: e.oid, lfs: e.lfs ? { oid: e.lfs.oid, size: e.lfs.size } : undefined };
}

/** Which files of a repo listing a pull without `:FILE` takes, and the path it returns. */
function chooseFiles(ctx: Ctx, files: RepoFile[]): { take: RepoFile[]; gguf?: RepoFile } {
  const ggufs = files.filter((f) => isGguf(f.path));
  if (ggufs.length > 0) {
    const names = ggufs.map((f) => f.path).sort();
    const pick = preferredGguf(names);
    if (pick === undefined) {
      throw new HubError(`${ctx.repo} holds ${names.length} .gguf files and none is ${PREFERRED_QUANTS.join(' or ')}; name one: rocketkv pull ${ctx.repo}:FILE (choices: ${names.join(', ')})`);
    }
    if (names.length > 1) ctx.opts.log?.(`${ctx.repo} holds ${names.length} .gguf files (${names.join(', ')}); taking ${pick}, name another with rocketkv pull ${ctx.repo}:FILE`);
    const gguf = ggufs.find((f) => f.path === pick)!;
    return { take: [gguf], gguf };
  }
  const top = files.filter((f) => !f.path.includes('/'));
  if (!top.some((f) => f.path === 'config.json')) {
    throw new HubError(`${ctx.repo} holds neither .gguf files nor config.json; name a file: rocketkv pull ${ctx.repo}:FILE`);
  }
  if (!top.some((f) => f.path.endsWith('.safetensors'))) {
    throw new HubError(`${ctx.repo} has no .safetensors weights; this engine reads safetensors or GGUF checkpoints`);
  }
  const take = top.filter((f) => MODEL_DIR_FILES.includes(f.path) || f.path.endsWith('.safetensors') || f.path.endsWith('.safetensors.index.json'));
  return { take };
}

/** Pulls REPO[:FILE] and returns the path to pass to `--model`. */
export async function pull(opts: PullOptions): Promise<string> {
  try {
    return await pullInto(opts);
  } catch (e) {
    // A cache that cannot be written (a file where a directory should be, permissions, a full disk).
    const err = e as NodeJS.ErrnoException;
    if (!(e instanceof HubError) && err?.syscall !== undefined) {
      throw new HubError(`cannot write the Hugging Face cache (${err.code ?? err.message}${err.path ? ` at ${err.path}` : ''}); point HF_HOME or HF_HUB_CACHE at a writable directory`);
    }
    throw e;
  }
}

async function pullInto(opts: PullOptions): Promise<string> {
  const env = opts.env ?? process.env;
  const revision = opts.revision ?? 'main';
  assertSafeRepoPath(revision, 'revision');
  if (opts.file !== undefined) assertSafeRepoPath(opts.file);
  if (isOffline(env)) return fromCache(opts.repo, opts.file, revision, env);
  if (isCommitHash(revision)) {
    // A cached file of a commit is complete (its pointer is made last); a directory may not be.
    const cached = lookupCached(opts.repo, opts.file, revision, env);
    if (cached.kind === 'found' && (opts.file !== undefined || isGguf(cached.path))) return cached.path;
  }
  const ctx: Ctx = {
    repo: opts.repo, revision, opts,
    endpoint: (env.HF_ENDPOINT || DEFAULT_ENDPOINT).replace(/\/+$/, ''),
    token: env.HF_TOKEN || undefined,
    repoDir: repoCacheDir(opts.repo, env),
  };
  try {
    new URL(ctx.endpoint);
  } catch {
    throw new HubError(`HF_ENDPOINT '${ctx.endpoint}' is not a URL (default ${DEFAULT_ENDPOINT})`);
  }
  const commit = isCommitHash(revision)
    ? revision
    : (await hub(ctx, () => modelInfo({ name: opts.repo, revision, hubUrl: ctx.endpoint, accessToken: ctx.token, additionalFields: ['sha'] }))).sha;
  if (!isCommitHash(commit ?? '')) throw new HubError(`${ctx.endpoint} gave no commit for ${opts.repo} at revision ${revision}`);

  let result: string;
  if (opts.file !== undefined) {
    const file = opts.file;
    const infos = await hub(ctx, () => pathsInfo({ repo: opts.repo, paths: [file], revision: commit, hubUrl: ctx.endpoint, accessToken: ctx.token }), file);
    const entry = infos.find((p) => p.path === file && p.type === 'file');
    if (entry === undefined) throw statusError(ctx, 404, '', file);
    result = await pullFile(ctx, commit, toRepoFile(entry));
  } else {
    const files: RepoFile[] = [];
    await hub(ctx, async () => {
      for await (const e of listFiles({ repo: opts.repo, revision: commit, recursive: true, hubUrl: ctx.endpoint, accessToken: ctx.token })) {
        if (e.type === 'file') files.push(toRepoFile(e));
      }
    });
    const { take, gguf } = chooseFiles(ctx, files);
    for (const f of take) await pullFile(ctx, commit, f);
    result = gguf ? join(ctx.repoDir, 'snapshots', commit, gguf.path) : join(ctx.repoDir, 'snapshots', commit);
  }
  // The ref moves last, so `--model ORG/NAME` never sees a half-pulled snapshot.
  await writeRef(ctx.repoDir, revision, commit);
  return result;
}
