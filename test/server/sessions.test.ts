// Multi-turn caches (X-Session-Id): a turn whose prompt extends the session's cache prefills only
// its new tokens and answers as a fresh request would; idle caches give their blocks back when a
// request waits for memory.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { bundledModelDir } from '../../src/cli/default-model.ts';
import type { RocketServer } from '../../src/server/app.ts';
import { MODEL, promptTokens, startTestServer } from '../helpers/server.ts';

let server: RocketServer;
before(async () => {
  // 2 MiB: 512 blocks of 4 KiB; the 1,900-token full-cache request below needs 4 x 119 = 476 of them, more than the idle sessions leave.
  server = await startTestServer({ load: { model: bundledModelDir(), kvMemoryBytes: 2 * 2 ** 20 } });
});
after(async () => { await server.shutdown(0); });

interface Reply { choices: { message: { content: string } }[]; usage: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details: { cached_tokens: number } } }

async function chat(messages: { role: string; content: string }[], session?: string, kv: unknown = { method: 'full' }): Promise<Reply> {
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(session ? { 'x-session-id': session } : {}) },
    body: JSON.stringify({ model: MODEL, messages, max_tokens: 6, temperature: 0, ignore_eos: true, kv }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json() as Promise<Reply>;
}

test('a second turn reuses the session cache and answers as a fresh request', async () => {
  const u1 = { role: 'user', content: 'Line 0: the value of key 12 is 4411. Line 1: the value of key 7 is 90210. What is the value of key 7? It is' };
  const t1 = await chat([u1], 'alice');
  assert.equal(t1.usage.prompt_tokens_details.cached_tokens, 0);
  const a1 = { role: 'assistant', content: t1.choices[0]!.message.content };
  const u2 = { role: 'user', content: 'And the value of key 12? It is' };
  const t2 = await chat([u1, a1, u2], 'alice');
  assert.equal(t2.usage.prompt_tokens_details.cached_tokens, t1.usage.prompt_tokens + t1.usage.completion_tokens, 'the first turn\'s prompt and reply come from the cache');
  const fresh = await chat([u1, a1, u2]);
  assert.equal(fresh.usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(t2.usage.prompt_tokens, fresh.usage.prompt_tokens, 'usage counts the whole prompt');
  assert.equal(t2.choices[0]!.message.content, fresh.choices[0]!.message.content);

  // Another method, or a prompt that does not extend the cache: the session starts over.
  const other = await chat([u1, a1, u2], 'alice', { method: 'snapkv', budget: 32 });
  assert.equal(other.usage.prompt_tokens_details.cached_tokens, 0);
  const edited = await chat([{ role: 'user', content: 'Something else entirely.' }], 'alice', { method: 'snapkv', budget: 32 });
  assert.equal(edited.usage.prompt_tokens_details.cached_tokens, 0);
});

test('idle session caches give their blocks back when a request waits for memory', async () => {
  await chat([{ role: 'user', content: 'Line 3: the value of key 1 is 777. What is the value of key 1? It is' }], 'bob');
  await chat([{ role: 'user', content: 'Line 4: the value of key 2 is 888. What is the value of key 2? It is' }], 'carol');
  assert.ok(server.host.gauge('blocksInUse') > 0, 'the idle sessions hold blocks');
  const big = await promptTokens(1900, 11);
  const res = await fetch(`${server.url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, prompt: big, max_tokens: 4, temperature: 0, ignore_eos: true }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const again = await chat([{ role: 'user', content: 'Line 3: the value of key 1 is 777. What is the value of key 1? It is' }], 'bob');
  assert.equal(again.usage.prompt_tokens_details.cached_tokens, 0, 'bob\'s cache was given back');
  const bad = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-session-id': 'has space' },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(bad.status, 400);
});

test('sessions end with the server: nothing left in the pool', async () => {
  assert.ok(server.host.gauge('blocksInUse') > 0, 'idle sessions hold blocks');
  await server.shutdown(0);
  assert.equal(server.host.state, 'closed');
  assert.equal(server.host.gauge('blocksInUse'), 0, 'the engine thread published an empty pool as it closed');
});
