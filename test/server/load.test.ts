// Load on loopback: 32 concurrent streaming clients, a third of them leaving midway, under a KV
// limit that forces queueing. Every completed reply equals the same request run alone, none is
// lost or doubled, the pool ends at zero blocks, and the process's memory stays bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { bundledModelDir } from '../../src/cli/default-model.ts';
import type { RocketServer } from '../../src/server/app.ts';
import { MODEL, poolDrained, promptTokens, readSse, streamText, startTestServer } from '../helpers/server.ts';

let server: RocketServer;
before(async () => {
  // 1.5 MiB: about three 600-token full caches (4 KiB per 16 tokens of one of 4 layer-heads).
  server = await startTestServer({ load: { model: bundledModelDir(), kvMemoryBytes: 1.5 * 2 ** 20 } });
});
after(async () => { await server.shutdown(0); });

const METHODS = [{ method: 'full' }, { method: 'rocketkv', budget: 64 }, { method: 'kvcompress', budget: 32 }, { method: 'snapkv', budget: 48 }];

test('32 concurrent streaming clients, a third disconnecting midway, under a limit that forces queueing', async () => {
  const requests = await Promise.all(Array.from({ length: 32 }, async (_, i) => ({
    model: MODEL,
    prompt: await promptTokens(200 + ((i * 97) % 400), 100 + i),
    // The clients that leave ask for far more than they wait for, so their requests are still running when they go.
    max_tokens: i % 3 === 0 ? 300 : 16 + (i % 3) * 8,
    temperature: 0,
    ignore_eos: true,
    stream: true,
    kv: METHODS[i % METHODS.length],
  })));
  const post = (body: unknown, signal?: AbortSignal) => fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal });

  // Each request alone first.
  const solo: string[] = [];
  for (const [i, r] of requests.entries()) {
    if (i % 3 === 0) { solo.push(''); continue; }
    const { events, done } = await readSse(await post(r));
    assert.ok(done);
    solo.push(streamText(events));
  }
  assert.ok(new Set(solo).size > 12, 'outputs differ between requests');
  assert.equal(await poolDrained(server), 0);

  const rss0 = process.memoryUsage().rss;
  let maxWaiting = 0;
  let maxRunning = 0;
  const sampler = setInterval(() => {
    maxWaiting = Math.max(maxWaiting, server.host.gauge('waiting'));
    maxRunning = Math.max(maxRunning, server.host.gauge('running'));
  }, 2);
  const results = await Promise.all(requests.map(async (r, i) => {
    const leaves = i % 3 === 0;
    const ac = new AbortController();
    const res = await post(r, ac.signal);
    assert.equal(res.status, 200);
    try {
      const out = await readSse(res, (_ev, n) => (leaves && n === 4 ? (ac.abort(), false) : undefined));
      return { i, leaves, ...out };
    } catch (e) {
      if (leaves && (e as Error).name === 'AbortError') return { i, leaves, events: [], done: false };
      throw e;
    }
  }));
  clearInterval(sampler);

  const ids = new Set<string>();
  let completed = 0;
  for (const r of results) {
    if (r.leaves) { assert.equal(r.done, false, `client ${r.i} left before the end`); continue; }
    completed++;
    assert.ok(r.done, `request ${r.i} ended with [DONE]`);
    const finishes = r.events.filter((e) => (e.choices as { finish_reason: string | null }[])[0]?.finish_reason);
    assert.equal(finishes.length, 1, `request ${r.i}: one final chunk`);
    const id = new Set(r.events.map((e) => e.id as string));
    assert.equal(id.size, 1, `request ${r.i}: one id on every chunk`);
    ids.add([...id][0]!);
    assert.equal(streamText(r.events), solo[r.i], `request ${r.i} (${JSON.stringify(requests[r.i]!.kv)}) equals its run alone`);
  }
  assert.equal(completed, 21);
  assert.equal(ids.size, 21, 'no reply lost or doubled');
  assert.ok(maxWaiting > 0, `requests queued (most waiting at once: ${maxWaiting})`);
  assert.ok(maxRunning > 1, `requests ran together (most at once: ${maxRunning})`);
  assert.equal(await poolDrained(server), 0, 'the pool is back to zero blocks');
  const grown = process.memoryUsage().rss - rss0;
  assert.ok(grown < 200 * 2 ** 20, `the process grew by ${(grown / 2 ** 20).toFixed(1)} MiB`);
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const aborted = Number(/^vllm:request_success_total\{finished_reason="abort",model_name="rocketkv-tiny"\} (\d+)$/m.exec(metrics)?.[1] ?? 0);
  assert.equal(aborted, 11, 'the clients that left were cancelled');
  console.log(`# load: 32 clients, ${completed} completed, 11 left midway; most running at once ${maxRunning}, most waiting ${maxWaiting}, process grew ${(grown / 2 ** 20).toFixed(1)} MiB`);
});
