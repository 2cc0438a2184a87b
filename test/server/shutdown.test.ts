// SIGTERM under load, on the CLI server: with a grace period the requests in flight complete; with
// none they end with a clean error event; either way the process exits 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MODEL, promptTokens, readSse, startCliServer, streamText } from '../helpers/server.ts';

async function loadThenTerm(grace: string) {
  const srv = await startCliServer(['--shutdown-grace', grace, '--kv-memory', '8MB']);
  const bodies = await Promise.all(Array.from({ length: 6 }, async (_, i) => ({ model: MODEL, prompt: await promptTokens(300, 40 + i), max_tokens: 150, temperature: 0, ignore_eos: true, stream: true })));
  let started = 0;
  let termed = false;
  let probe: Promise<number | string> = Promise.resolve('none');
  const streams = bodies.map(async (b) => {
    const res = await fetch(`${srv.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });
    assert.equal(res.status, 200);
    return readSse(res, (_ev, n) => {
      if (n === 2 && ++started === bodies.length && !termed) {
        termed = true;
        srv.child.kill('SIGTERM');
        // A new request while the server drains.
        probe = new Promise((r) => setTimeout(r, 200)).then(() => fetch(`${srv.url}/v1/models`).then((x) => x.status, () => 'refused'));
      }
    });
  });
  const results = await Promise.all(streams);
  const code = await srv.exited;
  return { results, code, stderr: srv.stderr(), url: srv.url, probe: await probe };
}

test('SIGTERM with a grace period: requests in flight complete, new ones are refused, exit 0', async () => {
  const { results, code, stderr, url, probe } = await loadThenTerm('30');
  assert.ok(probe === 'refused' || probe === 503, `a request during the drain: ${probe}`);
  for (const r of results) {
    assert.ok(r.done, 'each stream ends with [DONE]');
    assert.ok(r.events.every((e) => !('error' in e)));
    assert.ok(streamText(r.events).length > 0);
  }
  assert.equal(code, 0, stderr);
  assert.match(stderr, /SIGTERM: stopping/);
  assert.match(stderr, /shutting down: 6 request\(s\) in flight/);
  await assert.rejects(fetch(`${url}/health`), 'the port is closed after the exit');
});

test('SIGTERM without a grace period: requests in flight end with a clean error, exit 0', async () => {
  const { results, code, stderr } = await loadThenTerm('0');
  for (const r of results) {
    assert.equal(r.done, false);
    const last = r.events.at(-1) as { error?: { code: string; message: string } };
    assert.equal(last.error?.code, 'shutting_down', JSON.stringify(last));
    assert.match(last.error!.message, /shutting down/);
  }
  assert.equal(code, 0, stderr);
  assert.match(stderr, /cancelling 6 request\(s\) still in flight/);
});
