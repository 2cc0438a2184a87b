/**
 * Writes into the hub cache (layout in cache.ts). Each write goes to a temporary name first and is
 * renamed into place, so a reader, this process or Python's huggingface_hub, never sees half a file.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { assertSafeRepoPath, isCommitHash } from './cache.ts';

function tempName(path: string): string {
  return `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * snapshots/<commit>/<file> -> ../../blobs/<blob>, a relative symlink as huggingface_hub makes;
 * a copy of the blob where symlinks are not allowed. Returns the snapshot path.
 */
export async function linkSnapshotFile(repoDir: string, commit: string, file: string, blobName: string): Promise<string> {
  assertSafeRepoPath(file);
  const pointer = join(repoDir, 'snapshots', commit, file);
  const blob = join(repoDir, 'blobs', blobName);
  await mkdir(dirname(pointer), { recursive: true });
  const tmp = tempName(pointer);
  try {
    await symlink(relative(dirname(pointer), blob), tmp);
  } catch {
    await copyFile(blob, tmp);
  }
  await rename(tmp, pointer);
  return pointer;
}

/** refs/<revision> holds the commit a branch or tag resolved to (nothing for a commit hash). */
export async function writeRef(repoDir: string, revision: string, commit: string): Promise<void> {
  if (revision === commit || isCommitHash(revision)) return;
  assertSafeRepoPath(revision, 'revision');
  const ref = join(repoDir, 'refs', revision);
  await mkdir(dirname(ref), { recursive: true });
  const tmp = tempName(ref);
  await writeFile(tmp, commit);
  await rename(tmp, ref);
}

/** Moves a finished download onto its blob name. */
export async function commitBlob(incomplete: string, blob: string): Promise<void> {
  await mkdir(dirname(blob), { recursive: true });
  await rename(incomplete, blob);
}

export async function removeQuietly(path: string): Promise<void> {
  await rm(path, { force: true });
}

/** Hex sha256 of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}
