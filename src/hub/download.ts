/**
 * The byte transfer of one file onto blobs/<etag>.incomplete, resumable, then checked and renamed
 * onto blobs/<etag>. @huggingface/hub's downloadFileToCacheDir neither resumes nor checks size or
 * hash, so this part is ours; the URL, size and expected hashes come from the hub client.
 *
 * Resume: a `.incomplete` file of S bytes continues with `Range: bytes=S-` (a server answering 200
 * instead of 206 restarts it from zero). Integrity: the byte count must equal the hub's size, and
 * the sha256 (LFS files) or the git blob sha1 (`blob <size>\0<bytes>`, small files) must match; on a
 * mismatch the partial file is removed. A connection cut mid-way keeps it, for the next run.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, stat, truncate } from 'node:fs/promises';
import { dirname } from 'node:path';
import { HubError } from '../errors.ts';
import { removeQuietly } from './store.ts';

export interface ExpectedBlob {
  bytes: number;
  sha256?: string;
  /** Git blob id, for files not stored in LFS. */
  gitSha1?: string;
}

export interface Progress {
  update(doneBytes: number, totalBytes: number): void;
  stop(): void;
}

export interface TransferOptions {
  /** Shown in messages: `ORG/NAME:FILE`. */
  label: string;
  url: string;
  incomplete: string;
  expected: ExpectedBlob;
  /** Sent as `Authorization: Bearer` to this origin only, never to a CDN it redirects to. */
  token?: string;
  hubOrigin: string;
  progress?: Progress;
  log?: (line: string) => void;
  /** Maps a non-2xx answer to an error the user can act on. */
  httpError: (status: number, message: string) => Error;
  fetch?: typeof fetch;
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** GET following redirects by hand, so the token goes to the hub's origin only. */
async function getFollowing(o: TransferOptions, headers: Record<string, string>): Promise<Response> {
  let url = o.url;
  for (let hop = 0; hop < 10; hop++) {
    const auth: Record<string, string> = o.token !== undefined && new URL(url).origin === o.hubOrigin ? { Authorization: `Bearer ${o.token}` } : {};
    let res: Response;
    try {
      res = await (o.fetch ?? fetch)(url, { headers: { ...headers, ...auth }, redirect: 'manual' });
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause;
      throw new HubError(
        `cannot reach ${new URL(url).origin} to download ${o.label} (${cause?.code ?? (e as Error).message}); check the network, set HF_ENDPOINT to a reachable mirror, or set HF_HUB_OFFLINE=1 to use cached files only`,
      );
    }
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      await res.body?.cancel();
      url = new URL(location, url).href;
      continue;
    }
    return res;
  }
  throw new HubError(`too many redirects downloading ${o.label} from ${o.url}`);
}

function hashers(expected: ExpectedBlob): { sha256?: Hash; gitSha1?: Hash } {
  const gitSha1 = expected.gitSha1 === undefined ? undefined : createHash('sha1').update(`blob ${expected.bytes}\0`);
  return { sha256: expected.sha256 === undefined ? undefined : createHash('sha256'), gitSha1 };
}

async function mismatch(o: TransferOptions, what: string): Promise<HubError> {
  await removeQuietly(o.incomplete);
  return new HubError(`${o.label}: ${what}; the partial download was removed, rerun the command to fetch it again`);
}

/** Downloads (or finishes) `o.incomplete` and checks it; the caller renames it onto the blob. */
export async function transfer(o: TransferOptions): Promise<void> {
  const total = o.expected.bytes;
  let start = await sizeOf(o.incomplete);
  if (start > total) {
    await truncate(o.incomplete, 0);
    start = 0;
  }
  const h = hashers(o.expected);
  let res: Response | undefined;
  if (start < total) {
    res = await getFollowing(o, start > 0 ? { Range: `bytes=${start}-` } : {});
    if (res.status === 416) {
      await res.body?.cancel();
      throw await mismatch(o, `the server has fewer bytes than the ${total} the hub announced`);
    }
    if (!res.ok) {
      const body = await res.text().catch(() => '');
      throw o.httpError(res.status, body);
    }
    if (start > 0 && res.status !== 206) {
      o.log?.(`${o.label}: the server ignored the resume request; starting over`);
      start = 0;
    } else if (start > 0) {
      const from = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
      if (!from || Number(from[1]) !== start) {
        await res.body?.cancel();
        throw await mismatch(o, `the server resumed at ${from?.[1] ?? 'an unknown offset'} instead of byte ${start}`);
      }
      o.log?.(`${o.label}: resuming at ${start} of ${total} bytes`);
    }
  }
  if (start > 0) {
    // The bytes already on disk count towards the hashes.
    for await (const chunk of createReadStream(o.incomplete, { end: start - 1, highWaterMark: 1 << 20 })) {
      h.sha256?.update(chunk as Buffer);
      h.gitSha1?.update(chunk as Buffer);
    }
  }

  let done = start;
  o.progress?.update(done, total);
  await mkdir(dirname(o.incomplete), { recursive: true });
  const fh = await open(o.incomplete, start > 0 ? 'a' : 'w');
  try {
    if (res?.body) {
      try {
        for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
          done += chunk.byteLength;
          if (done > total) break;
          await fh.write(chunk);
          h.sha256?.update(chunk);
          h.gitSha1?.update(chunk);
          o.progress?.update(done, total);
        }
      } catch (e) {
        if (e instanceof HubError) throw e;
        if ((e as NodeJS.ErrnoException).syscall !== undefined) throw new HubError(`${o.label}: cannot write ${o.incomplete} (${(e as Error).message})`);
        throw new HubError(`${o.label}: the download was cut off at ${done} of ${total} bytes (${(e as Error).message}); rerun the command to resume it`);
      }
    }
  } finally {
    await fh.close();
    o.progress?.stop();
  }
  if (done !== total) throw await mismatch(o, `got ${done > total ? `more than ${total}` : done} bytes, expected ${total} (size mismatch)`);
  const sha256 = h.sha256?.digest('hex');
  if (sha256 !== undefined && sha256 !== o.expected.sha256) {
    throw await mismatch(o, `sha256 ${sha256} does not match the hub's ${o.expected.sha256} (hash mismatch)`);
  }
  const gitSha1 = h.gitSha1?.digest('hex');
  if (gitSha1 !== undefined && gitSha1 !== o.expected.gitSha1) {
    throw await mismatch(o, `git blob id ${gitSha1} does not match the hub's ${o.expected.gitSha1} (hash mismatch)`);
  }
}
