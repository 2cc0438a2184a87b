import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertOneLineError } from '../helpers/cli.ts';
import { randomBytes } from 'node:crypto';
import { pull } from '../../src/hub/pull.ts';
import { hubCacheDir, resolveModelArg } from '../../src/hub/cache.ts';
import { HubError, ModelLoadError } from '../../src/errors.ts';
import { FakeHub, gitOid, sha256, type FakeFile } from './fake-hub.ts';

const entry = fileURLToPath(new URL('../helpers/rocketkv.ts', import.meta.url));
const COMMIT = 'a'.repeat(40);
const COMMIT2 = 'b'.repeat(40);
const GGUF = randomBytes(200_000);
const Q8 = randomBytes(30_000);
const CONFIG = Buffer.from('{"architectures":["LlamaForCausalLM"]}');

let hub: FakeHub;
let root = '';
let home = '';
let n = 0;

/** A fresh HF_HOME per test, pointing at the fake hub. */
function envFor(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { HF_HOME: home, HF_ENDPOINT: hub.endpoint, ...extra };
}

function repoDir(repo: string): string {
  return join(home, 'hub', `models--${repo.replace('/', '--')}`);
}

function put(repo: string, files: Record<string, FakeFile>, extra: { token?: string; commit?: string } = {}): void {
  hub.repos.set(repo, { commit: extra.commit ?? COMMIT, files, token: extra.token });
}

async function rejects(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof HubError, `HubError expected, got ${String(e)}`);
    assert.match(e.message, pattern);
    assert.doesNotMatch(e.message, /\n/);
    return true;
  });
}

before(async () => {
  hub = await FakeHub.start();
  root = mkdtempSync(join(tmpdir(), 'rkv-hub-'));
});

after(async () => {
  await hub.close();
  rmSync(root, { recursive: true, force: true });
});

beforeEach(() => {
  home = join(root, `home${n++}`);
  hub.requests = [];
  hub.repos.clear();
  hub.cutAfterBytes = undefined;
  hub.ignoreRange = false;
  put('org/m', {
    'model.Q4_K_M.gguf': { content: GGUF, lfs: true },
    'README.md': { content: Buffer.from('# readme') },
  });
});

test('hubCacheDir follows HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, then ~/.cache', () => {
  assert.equal(hubCacheDir({ HF_HUB_CACHE: '/c', HF_HOME: '/h' }), '/c');
  assert.equal(hubCacheDir({ HF_HOME: '/h', XDG_CACHE_HOME: '/x' }), join('/h', 'hub'));
  assert.equal(hubCacheDir({ XDG_CACHE_HOME: '/x' }), join('/x', 'huggingface', 'hub'));
  assert.equal(hubCacheDir({}), join(homedir(), '.cache', 'huggingface', 'hub'));
  assert.equal(hubCacheDir({ HF_HOME: '~/hf' }), join(homedir(), 'hf', 'hub'));
});

test('a pull lands in the hub cache layout: blob by sha256, snapshot symlink, refs/main', async () => {
  const path = await pull({ repo: 'org/m', env: envFor() });
  const dir = repoDir('org/m');
  assert.equal(path, join(dir, 'snapshots', COMMIT, 'model.Q4_K_M.gguf'));
  assert.deepEqual(readFileSync(path), GGUF);
  assert.ok(lstatSync(path).isSymbolicLink());
  assert.equal(readlinkSync(path), join('..', '..', 'blobs', sha256(GGUF)));
  assert.equal(readFileSync(join(dir, 'refs', 'main'), 'utf8'), COMMIT);
  assert.deepEqual(readdirSync(join(dir, 'blobs')), [sha256(GGUF)]);
  assert.ok(!existsSync(join(dir, 'snapshots', COMMIT, 'README.md')), 'only the model file is pulled');
  // LFS bytes come from the CDN the hub redirects to.
  assert.ok(hub.requests.some((r) => r.server === 'cdn'));
});

test('a second pull is answered from the cache: no GET of the file', async () => {
  const first = await pull({ repo: 'org/m', env: envFor() });
  hub.requests = [];
  const second = await pull({ repo: 'org/m', env: envFor() });
  assert.equal(second, first);
  assert.deepEqual(hub.fileGets(), []);
  hub.requests = [];
  // A commit hash that is cached needs no network at all.
  assert.equal(await pull({ repo: 'org/m', revision: COMMIT, env: envFor() }), first);
  assert.deepEqual(hub.requests, []);
});

test('a download cut off mid-way is resumed with a Range request', async () => {
  hub.cutAfterBytes = 50_000;
  await rejects(pull({ repo: 'org/m', env: envFor() }), /cut off at \d+ of 200000 bytes.*rerun/);
  const incomplete = join(repoDir('org/m'), 'blobs', `${sha256(GGUF)}.incomplete`);
  const have = readFileSync(incomplete).length;
  assert.ok(have > 0 && have < GGUF.length, `partial file kept (${have} bytes)`);
  assert.ok(!existsSync(join(repoDir('org/m'), 'snapshots', COMMIT, 'model.Q4_K_M.gguf')));
  hub.requests = [];
  const path = await pull({ repo: 'org/m', env: envFor() });
  assert.deepEqual(readFileSync(path), GGUF);
  assert.ok(hub.fileGets().some((r) => r.headers.range === `bytes=${have}-`), 'Range request from the partial size');
  assert.ok(!existsSync(incomplete));
});

test('a .incomplete file left by an earlier run continues from its size; a server ignoring Range restarts it', async () => {
  const blobs = join(repoDir('org/m'), 'blobs');
  mkdirSync(blobs, { recursive: true });
  writeFileSync(join(blobs, `${sha256(GGUF)}.incomplete`), GGUF.subarray(0, 123_456));
  const path = await pull({ repo: 'org/m', env: envFor() });
  assert.deepEqual(readFileSync(path), GGUF);
  assert.ok(hub.fileGets().some((r) => r.headers.range === 'bytes=123456-'));

  home = join(root, `home${n++}`);
  mkdirSync(join(repoDir('org/m'), 'blobs'), { recursive: true });
  writeFileSync(join(repoDir('org/m'), 'blobs', `${sha256(GGUF)}.incomplete`), Buffer.alloc(1000, 7)); // wrong bytes
  hub.ignoreRange = true;
  const lines: string[] = [];
  assert.deepEqual(readFileSync(await pull({ repo: 'org/m', env: envFor(), log: (l) => lines.push(l) })), GGUF);
  assert.match(lines.join('\n'), /ignored the resume request; starting over/);
});

function assertNothingStored(repo: string, file: string): void {
  const dir = repoDir(repo);
  assert.ok(!existsSync(join(dir, 'snapshots', COMMIT, file)), 'no snapshot file');
  const blobs = existsSync(join(dir, 'blobs')) ? readdirSync(join(dir, 'blobs')) : [];
  assert.deepEqual(blobs, [], 'no blob and no partial file');
}

test('a wrong size is rejected and leaves nothing in the cache', async () => {
  put('org/m', { 'model.Q4_K_M.gguf': { content: GGUF, lfs: true, advertisedBytes: GGUF.length + 7 } });
  await rejects(pull({ repo: 'org/m', env: envFor() }), /got 200000 bytes, expected 200007 \(size mismatch\).*removed, rerun/);
  assertNothingStored('org/m', 'model.Q4_K_M.gguf');
});

test('a wrong sha256 (LFS) or git blob id (small file) is rejected and leaves nothing in the cache', async () => {
  put('org/m', { 'model.Q4_K_M.gguf': { content: GGUF, lfs: true, advertisedSha256: sha256(Buffer.from('other')) } });
  await rejects(pull({ repo: 'org/m', env: envFor() }), /sha256 [0-9a-f]{64} does not match .*hash mismatch.*rerun/);
  assertNothingStored('org/m', 'model.Q4_K_M.gguf');

  put('org/m', { 'notes.txt': { content: CONFIG, advertisedOid: gitOid(Buffer.from('other')) } });
  await rejects(pull({ repo: 'org/m', file: 'notes.txt', env: envFor() }), /git blob id [0-9a-f]{40} does not match .*\(hash mismatch\)/);
  assertNothingStored('org/m', 'notes.txt');
});

test('file names that climb out of the cache are refused, from the user and from the hub', async () => {
  await rejects(pull({ repo: 'org/m', file: '../../evil.gguf', env: envFor() }), /refusing file name '\.\.\/\.\.\/evil\.gguf'/);
  await rejects(pull({ repo: 'org/m', file: '/etc/passwd', env: envFor() }), /refusing file name/);
  await rejects(pull({ repo: 'org/m', revision: '../../x', env: envFor() }), /refusing revision/);
  assert.deepEqual(hub.requests, [], 'refused before any request');
  put('org/m', { '../evil.gguf': { content: GGUF, lfs: true } });
  await rejects(pull({ repo: 'org/m', env: envFor() }), /refusing file name '\.\.\/evil\.gguf'/);
  assert.ok(!existsSync(join(repoDir('org/m'), 'snapshots', 'evil.gguf')));
  assert.deepEqual(hub.fileGets(), []);
});

test('offline mode answers from the cache, or says the file is not cached', async () => {
  await rejects(pull({ repo: 'org/m', env: envFor({ HF_HUB_OFFLINE: '1' }) }), /org\/m is not in the Hugging Face cache .*offline mode is on \(HF_HUB_OFFLINE=1\)/);
  assert.deepEqual(hub.requests, []);
  const path = await pull({ repo: 'org/m', env: envFor() });
  hub.requests = [];
  assert.equal(await pull({ repo: 'org/m', env: envFor({ HF_HUB_OFFLINE: '1' }) }), path);
  assert.equal(await pull({ repo: 'org/m', file: 'model.Q4_K_M.gguf', env: envFor({ HF_HUB_OFFLINE: 'true' }) }), path);
  await rejects(pull({ repo: 'org/m', file: 'README.md', env: envFor({ HF_HUB_OFFLINE: '1' }) }), /org\/m:README\.md is not in the Hugging Face cache.*offline/);
  assert.deepEqual(hub.requests, []);
});

test('a gated repo: 401 asks for HF_TOKEN, and the token is sent to the hub (never to the CDN) when set', async () => {
  put('org/gated', { 'g.Q8_0.gguf': { content: Q8, lfs: true } }, { token: 'hf_right' });
  await rejects(pull({ repo: 'org/gated', env: envFor() }), /refused access to org\/gated \(HTTP 401.*set HF_TOKEN .*accept the model's license at http:\/\/127\.0\.0\.1:\d+\/org\/gated/);
  await rejects(pull({ repo: 'org/gated', env: envFor({ HF_TOKEN: 'hf_wrong' }) }), /HF_TOKEN lacks access/);
  await rejects(pull({ repo: 'org/gated', env: envFor({ HF_TOKEN: 'not-a-token' }) }), /HF_TOKEN is not a Hugging Face access token/);
  hub.requests = [];
  const path = await pull({ repo: 'org/gated', env: envFor({ HF_TOKEN: 'hf_right' }) });
  assert.deepEqual(readFileSync(path), Q8);
  const hubSide = hub.requests.filter((r) => r.server === 'hub');
  assert.ok(hubSide.length >= 3);
  for (const r of hubSide) assert.equal(r.headers.authorization, 'Bearer hf_right', r.url);
  for (const r of hub.requests.filter((q) => q.server === 'cdn')) assert.equal(r.headers.authorization, undefined, `token leaked to ${r.url}`);
});

test('404s name the repo, the file or the revision', async () => {
  await rejects(pull({ repo: 'org/nope', env: envFor() }), /repository org\/nope not found at http:\/\/127\.0\.0\.1:\d+/);
  await rejects(pull({ repo: 'org/m', file: 'missing.gguf', env: envFor() }), /file missing\.gguf not found in org\/m at revision main/);
  await rejects(pull({ repo: 'org/m', revision: 'v9', env: envFor() }), /revision v9 not found in org\/m/);
});

test('an unreachable endpoint is named, with HF_ENDPOINT and HF_HUB_OFFLINE', async () => {
  const srv = createServer();
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((ok) => srv.close(() => ok()));
  await rejects(pull({ repo: 'org/m', env: envFor({ HF_ENDPOINT: `http://127.0.0.1:${port}` }) }), new RegExp(`cannot reach http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\).*HF_ENDPOINT.*HF_HUB_OFFLINE=1`));
});

test('several .gguf files: Q8_0, then Q4_K_M, else the choices', async () => {
  put('org/multi', {
    'x.Q2_K.gguf': { content: Buffer.from('q2'), lfs: true },
    'x.Q4_K_M.gguf': { content: GGUF, lfs: true },
    'x.Q8_0.gguf': { content: Q8, lfs: true },
  });
  const lines: string[] = [];
  const path = await pull({ repo: 'org/multi', env: envFor(), log: (l) => lines.push(l) });
  assert.ok(path.endsWith('x.Q8_0.gguf'));
  assert.match(lines.join('\n'), /holds 3 \.gguf files \(x\.Q2_K\.gguf, x\.Q4_K_M\.gguf, x\.Q8_0\.gguf\); taking x\.Q8_0\.gguf.*org\/multi:FILE/);
  delete hub.repos.get('org/multi')!.files['x.Q8_0.gguf'];
  hub.repos.get('org/multi')!.commit = COMMIT2;
  assert.ok((await pull({ repo: 'org/multi', env: envFor() })).endsWith(join(COMMIT2, 'x.Q4_K_M.gguf')));
  put('org/odd', { 'y.Q2_K.gguf': { content: Buffer.from('a'), lfs: true }, 'y.Q5_K_S.gguf': { content: Buffer.from('b'), lfs: true } });
  await rejects(pull({ repo: 'org/odd', env: envFor() }), /none is Q8_0 or Q4_K_M; name one: rocketkv pull org\/odd:FILE \(choices: y\.Q2_K\.gguf, y\.Q5_K_S\.gguf\)/);
});

test('a cache that cannot be written ends in one HubError naming HF_HOME', async () => {
  put('org/ro', { 'm.gguf': { content: randomBytes(100), lfs: true } });
  const blocked = join(root, 'not-a-dir');
  writeFileSync(blocked, 'a file where the cache directory would go');
  await assert.rejects(pull({ repo: 'org/ro', env: { ...envFor(), HF_HUB_CACHE: join(blocked, 'hub') } }), (e: unknown) => e instanceof HubError && /cannot write the Hugging Face cache .*HF_HOME or HF_HUB_CACHE/.test((e as Error).message));
});

test('a safetensors repo pulls the model directory files only', async () => {
  const shard = randomBytes(5000);
  put('org/dir', {
    'config.json': { content: CONFIG },
    'tokenizer.json': { content: Buffer.from('{}') },
    'tokenizer_config.json': { content: Buffer.from('{"x":1}') },
    'generation_config.json': { content: Buffer.from('{"y":2}') },
    'chat_template.jinja': { content: Buffer.from('{{ messages }}') },
    'model-00001-of-00002.safetensors': { content: shard, lfs: true },
    'model-00002-of-00002.safetensors': { content: randomBytes(3000), lfs: true },
    'model.safetensors.index.json': { content: Buffer.from('{"weight_map":{}}') },
    'README.md': { content: Buffer.from('# r') },
    'onnx/model.onnx': { content: randomBytes(100), lfs: true },
  });
  const dir = await pull({ repo: 'org/dir', env: envFor() });
  assert.equal(dir, join(repoDir('org/dir'), 'snapshots', COMMIT));
  assert.deepEqual(readdirSync(dir).sort(), [
    'chat_template.jinja', 'config.json', 'generation_config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors',
    'model.safetensors.index.json', 'tokenizer.json', 'tokenizer_config.json',
  ]);
  assert.deepEqual(readFileSync(join(dir, 'model-00001-of-00002.safetensors')), shard);
  // Blob names as huggingface_hub makes them: git blob id for small files, sha256 for LFS.
  assert.equal(readlinkSync(join(dir, 'config.json')), join('..', '..', 'blobs', gitOid(CONFIG)));
  assert.equal(readlinkSync(join(dir, 'model-00001-of-00002.safetensors')), join('..', '..', 'blobs', sha256(shard)));
  assert.equal(resolveModelArg('org/dir', envFor()), dir);
});

test('resolveModelArg: an existing path, a pulled repo by id and by id:file, and what to run when missing', async () => {
  put('org/m', {
    'model.Q4_K_M.gguf': { content: GGUF, lfs: true },
    'model.Q8_0.gguf': { content: Q8, lfs: true },
  });
  const q4 = await pull({ repo: 'org/m', file: 'model.Q4_K_M.gguf', env: envFor() });
  const env = envFor();
  assert.equal(resolveModelArg('org/m', env), q4, 'the only .gguf cached');
  const q8 = await pull({ repo: 'org/m', file: 'model.Q8_0.gguf', env });
  assert.equal(resolveModelArg('org/m', env), q8, 'Q8_0 preferred');
  assert.equal(resolveModelArg('org/m:model.Q4_K_M.gguf', env), q4);
  assert.equal(resolveModelArg(root, env), root);
  assert.throws(() => resolveModelArg('org/none', env), (e: unknown) => e instanceof ModelLoadError && /does not exist.*run: rocketkv pull org\/none$/.test(e.message));
  assert.throws(() => resolveModelArg('org/m:other.gguf', env), (e: unknown) => e instanceof ModelLoadError && /org\/m:other\.gguf is not in the Hugging Face cache.*rocketkv pull org\/m:other\.gguf/.test(e.message));
  assert.throws(() => resolveModelArg('org/m:../../x', env), (e: unknown) => e instanceof ModelLoadError && /refusing/.test(e.message));
  assert.throws(() => resolveModelArg(join(root, 'no', 'such'), env), (e: unknown) => e instanceof ModelLoadError && /does not exist$/.test(e.message));
});

function cli(args: string[], extra: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  // Not spawnSync: the fake hub answers from this process's event loop.
  const env: NodeJS.ProcessEnv = { ...process.env, ...envFor(extra) };
  for (const k of ['HF_TOKEN', 'HF_HUB_OFFLINE', 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE']) if (!(k in extra)) delete env[k];
  return new Promise((ok) => {
    const child = spawn(process.execPath, ['--import', 'tsx', entry, ...args], { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('close', (code) => ok({ code: code ?? -1, stdout, stderr }));
  });
}

test('CLI: `rocketkv pull` prints the one path on stdout, progress lines on stderr, errors on one line', async () => {
  const ok = await cli(['pull', 'org/m']);
  assert.equal(ok.code, 0, ok.stderr);
  const path = join(repoDir('org/m'), 'snapshots', COMMIT, 'model.Q4_K_M.gguf');
  assert.equal(ok.stdout, `${path}\n`);
  assert.deepEqual(readFileSync(path), GGUF);
  assert.match(ok.stderr, /^downloading org\/m:model\.Q4_K_M\.gguf \(200\.0 kB\)$/m);
  assert.ok(ok.stderr.trim().split('\n').length <= 5, 'a few plain lines when stderr is not a terminal');

  put('org/gated', { 'g.gguf': { content: Q8, lfs: true } }, { token: 'hf_right' });
  const denied = await cli(['pull', 'org/gated']);
  assertOneLineError(denied, /HF_TOKEN/);
  assert.equal(denied.code, 1);
  assert.equal(denied.stdout, '');
  assertOneLineError(await cli(['pull', 'org/m:../x.gguf']), /refusing file name/);
  assertOneLineError(await cli(['pull', 'org/m:nope.gguf']), /file nope\.gguf not found in org\/m/);
  const usage = await cli(['pull', 'not-a-repo']);
  assertOneLineError(usage, /expected ORG\/NAME or ORG\/NAME:FILE/);
  assert.equal(usage.code, 2);
});
