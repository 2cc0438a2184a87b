// Malformed and unservable requests: each gets its 4xx in OpenAI's error shape with a message that
// names the problem, and the server goes on serving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { bundledModelDir } from '../../src/cli/default-model.ts';
import type { RocketServer } from '../../src/server/app.ts';
import { MODEL, poolDrained, promptTokens, startTestServer } from '../helpers/server.ts';

const KEY = 'secret-key';
let server: RocketServer;

before(async () => {
  // 1 MiB of KV: a 4,000-token full-cache request can never fit (2 layers x 2 heads x 4 KiB per 16 tokens).
  server = await startTestServer({ apiKey: KEY, bodyLimit: 256 * 1024, maxQueued: 2, load: { model: bundledModelDir(), kvMemoryBytes: 2 ** 20 } });
});
after(async () => { await server.shutdown(0); });

interface Case { name: string; path?: string; method?: string; body?: unknown; raw?: string; headers?: Record<string, string>; auth?: string | null; status: number; message: RegExp; param?: string }

const chat = (extra: Record<string, unknown>) => ({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });

async function send(c: Case): Promise<{ status: number; body: { error?: { message: string; type: string; param: string | null; code: string | null } } }> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...c.headers };
  const auth = c.auth === undefined ? `Bearer ${KEY}` : c.auth;
  if (auth !== null) headers.authorization = auth;
  const res = await fetch(`${server.url}${c.path ?? '/v1/chat/completions'}`, {
    method: c.method ?? 'POST',
    headers,
    body: c.method === 'GET' ? undefined : c.raw ?? JSON.stringify(c.body),
  });
  return { status: res.status, body: await res.json() as never };
}

test('malformed requests get the right 4xx with a clear message, and the server goes on serving', async () => {
  const long = await promptTokens(9000, 2);
  const big = await promptTokens(4000, 5);
  const cases: Case[] = [
    { name: 'bad JSON', raw: '{"model": "rocketkv-tiny", "messages": [', status: 400, message: /not valid JSON/ },
    { name: 'an array body', body: [1, 2], status: 400, message: /must be a JSON object/ },
    { name: 'an empty body', raw: '', status: 400, message: /body is empty/ },
    { name: 'not JSON', raw: 'hello', headers: { 'content-type': 'text/plain' }, status: 415, message: /unsupported content type "text\/plain"/ },
    { name: 'a wrong type', body: chat({ temperature: 'hot' }), status: 400, message: /^temperature: .*expected number/, param: 'temperature' },
    { name: 'an unknown field', body: chat({ frobnicate: true }), status: 400, message: /unrecognized request argument: frobnicate/ },
    { name: 'an unknown KV method', body: chat({ kv: { method: 'magic', budget: 64 } }), status: 400, message: /kv: unknown KV method 'magic'; choose one of: .*rocketkv/ },
    { name: 'a KV budget of 0', body: chat({ kv: { method: 'snapkv', budget: 0 } }), status: 400, message: /kv: .*budget/ },
    { name: 'a KV option that names a file', body: chat({ kv: { method: 'duo', budget: 64, pattern: '/etc/passwd' } }), status: 400, message: /^kv: option pattern names a file and cannot be set in a request/, param: 'kv.pattern' },
    { name: 'an unknown KV option', body: chat({ kv: { method: 'snapkv', budget: 8, colour: 'red' } }), status: 400, message: /kv: .*colour/ },
    { name: 'negative max_tokens', body: chat({ max_tokens: -5 }), status: 400, message: /^max_tokens: must be at least 1/, param: 'max_tokens' },
    { name: 'huge max_tokens', body: chat({ max_tokens: 1e9 }), status: 400, message: /max_tokens is 1000000000, more than the model's context of 8192/ },
    { name: 'fractional max_tokens', body: chat({ max_tokens: 2.5 }), status: 400, message: /^max_tokens: .*int/ },
    { name: 'an oversize body', body: chat({ messages: [{ role: 'user', content: 'x'.repeat(300_000) }] }), status: 413, message: /larger than the limit of 262144 bytes/ },
    { name: 'an unknown model', body: { ...chat({}), model: 'gpt-5' }, status: 404, message: /the model `gpt-5` does not exist; this server serves `rocketkv-tiny`/ },
    { name: 'no model', body: { messages: [{ role: 'user', content: 'hi' }] }, status: 400, message: /^model: /, param: 'model' },
    { name: 'empty messages', body: chat({ messages: [] }), status: 400, message: /messages: give at least one message/ },
    { name: 'no messages', body: { model: MODEL }, status: 400, message: /^messages: / },
    { name: 'a bad role', body: chat({ messages: [{ role: 'wizard', content: 'hi' }] }), status: 400, message: /^messages\.0\.role: .*"user"/, param: 'messages.0.role' },
    { name: 'n > 1', body: chat({ n: 3 }), status: 400, message: /only n = 1 is supported/ },
    { name: 'top_p 0', body: chat({ top_p: 0 }), status: 400, message: /^top_p: / },
    { name: 'stream not a boolean', body: chat({ stream: 'yes' }), status: 400, message: /^stream: / },
    { name: 'stream_options without stream', body: chat({ stream_options: { include_usage: true } }), status: 400, message: /stream_options is only allowed when stream is true/ },
    { name: 'logprobs', body: chat({ logprobs: true }), status: 400, message: /logprobs are not supported/ },
    { name: 'a prompt longer than the context', path: '/v1/completions', body: { model: MODEL, prompt: long, max_tokens: 4 }, status: 400, message: /the prompt is 9000 tokens, the model's context is 8192; shorten the prompt/ },
    { name: 'a token outside the vocabulary', path: '/v1/completions', body: { model: MODEL, prompt: [1, 2, 5000], max_tokens: 4 }, status: 400, message: /token id 5000 is outside the vocabulary of 1024/ },
    { name: 'a batch of prompts', path: '/v1/completions', body: { model: MODEL, prompt: ['a', 'b'], max_tokens: 4 }, status: 400, message: /give one prompt/ },
    { name: 'a request that can never fit the KV limit', path: '/v1/completions', body: { model: MODEL, prompt: big, max_tokens: 8 }, status: 400, message: /can never fit the KV memory limit: with the full cache, 4000 prompt tokens .* the limit holds 256 \(1\.0 MiB\)/ },
    { name: 'no API key', body: chat({}), auth: null, status: 401, message: /missing API key/ },
    { name: 'a wrong API key', body: chat({}), auth: 'Bearer nope', status: 401, message: /incorrect API key/ },
    { name: 'an unknown route', path: '/v1/embeddings', body: {}, status: 404, message: /no route POST \/v1\/embeddings/ },
    { name: 'a wrong HTTP method', path: '/v1/chat/completions', method: 'GET', status: 404, message: /no route GET \/v1\/chat\/completions/ },
  ];
  for (const c of cases) {
    const r = await send(c);
    assert.equal(r.status, c.status, `${c.name}: status ${r.status}, body ${JSON.stringify(r.body)}`);
    const e = r.body.error;
    assert.ok(e, `${c.name}: an error object`);
    assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type'], c.name);
    assert.match(e.message, c.message, `${c.name}: ${e.message}`);
    if (c.param) assert.equal(e.param, c.param, c.name);
  }
  console.log(`# ${cases.length} malformed requests answered as expected`);
  // And it still serves.
  const ok = await send({ name: 'good', body: chat({ max_tokens: 3, ignore_eos: true }), status: 200, message: /./ });
  assert.equal(ok.status, 200);
  assert.equal((ok.body as { usage: { completion_tokens: number } }).usage.completion_tokens, 3);
  assert.equal(await poolDrained(server), 0);
});

test('a full queue answers 429 and the queue drains', async () => {
  const ids = await promptTokens(300, 7);
  const body = JSON.stringify({ model: MODEL, prompt: ids, max_tokens: 400, ignore_eos: true, temperature: 0 });
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${KEY}` };
  const first = [fetch(`${server.url}/v1/completions`, { method: 'POST', headers, body }), fetch(`${server.url}/v1/completions`, { method: 'POST', headers, body })];
  while (server.host.inFlight < 2) await new Promise((r) => setTimeout(r, 5));
  const third = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers, body });
  assert.equal(third.status, 429);
  const e = (await third.json() as { error: { message: string; code: string } }).error;
  assert.equal(e.code, 'rate_limit_exceeded');
  assert.match(e.message, /2 requests queued or running, its limit; retry later/);
  for (const r of await Promise.all(first)) assert.equal(r.status, 200);
  assert.equal(await poolDrained(server), 0);
});

const metric = async (name: string): Promise<number> => {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+(?:\\.\\d+)?)$`, 'm').exec(text)?.[1] ?? 0);
};

test('a request without max_tokens generates as many tokens as fit the KV limit instead of being refused', async () => {
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], ignore_eos: true, temperature: 0 }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const r = await res.json() as { choices: { finish_reason: string }[]; usage: { prompt_tokens: number; completion_tokens: number } };
  assert.equal(r.choices[0]!.finish_reason, 'length');
  // 1 MiB holds 64 blocks of 16 tokens per layer and KV head: 1,024 tokens in all.
  assert.ok(r.usage.prompt_tokens + r.usage.completion_tokens <= 1024 && r.usage.completion_tokens > 900, JSON.stringify(r.usage));
  assert.equal(await poolDrained(server), 0);
});

test('a client that leaves before its request is accepted cancels it', async () => {
  const aborted0 = await metric('vllm:request_success_total\\{finished_reason="abort",model_name="rocketkv-tiny"\\}');
  const generated0 = await metric('vllm:generation_tokens_total\\{model_name="rocketkv-tiny"\\}');
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${KEY}` };
  // A holds 228 of the 256 blocks from the end of its prefill to its end, so B waits in the queue;
  // B is a session's turn, accepted only at its first token: its client leaves while it waits.
  const a = fetch(`${server.url}/v1/completions`, {
    method: 'POST', headers,
    body: JSON.stringify({ model: MODEL, prompt: await promptTokens(900, 12), max_tokens: 100, ignore_eos: true, temperature: 0 }),
  });
  while (server.host.gauge('blocksInUse') < 200) await new Promise((r) => setTimeout(r, 1));
  const ac = new AbortController();
  const b = fetch(`${server.url}/v1/completions`, {
    method: 'POST', headers: { ...headers, 'x-session-id': 'leaver' },
    body: JSON.stringify({ model: MODEL, prompt: await promptTokens(300, 8), max_tokens: 50, ignore_eos: true, temperature: 0 }),
    signal: ac.signal,
  });
  // B is queued behind A: leave at once, while A still holds its blocks (a fixed pause here let A
  // finish first on a fast host, and B then ran before its client left).
  while (server.host.inFlight < 2 || server.host.gauge('waiting') < 1) await new Promise((r) => setTimeout(r, 1));
  ac.abort();
  await assert.rejects(b, { name: 'AbortError' });
  assert.equal((await a).status, 200);
  assert.equal(await poolDrained(server), 0, 'the pool is back to zero blocks');
  assert.equal(await metric('vllm:request_success_total\\{finished_reason="abort",model_name="rocketkv-tiny"\\}'), aborted0 + 1, 'B ended as aborted');
  assert.equal((await metric('vllm:generation_tokens_total\\{model_name="rocketkv-tiny"\\}')) - generated0, 100, 'only A generated');
});
