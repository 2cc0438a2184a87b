// The official openai client against the server: chat and completions, streaming and not,
// cancellation through an AbortController, and the client's error classes for bad requests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Engine } from '../../src/engine/engine.ts';
import { bundledModelDir } from '../../src/cli/default-model.ts';
import type { RocketServer } from '../../src/server/app.ts';
import { MODEL, poolDrained, promptTokens, startTestServer } from '../helpers/server.ts';

let server: RocketServer;
let client: OpenAI;
let engine: Engine;

before(async () => {
  server = await startTestServer({ apiKey: 'test-key', load: { model: bundledModelDir(), kvMemoryBytes: 8 * 2 ** 20 } });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test-key', maxRetries: 0 });
  engine = await Engine.load(bundledModelDir(), { threads: 1 });
});

after(async () => {
  await server.shutdown(0);
  await engine.close();
});

test('chat completion, streamed and not, equals the library run of the same request', async () => {
  const messages = [{ role: 'user' as const, content: 'Line 0: the value of key 12 is 4411. Line 1: the value of key 7 is 90210. What is the value of key 7? It is' }];
  const kv = { method: 'snapkv', budget: 24 };
  const plain = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 0, ignore_eos: true, kv } as never) as unknown as OpenAI.ChatCompletion & { kv: { method: string; perHead: { kvs: number[] } } };
  assert.equal(plain.object, 'chat.completion');
  assert.equal(plain.choices[0]!.finish_reason, 'length');
  assert.equal(plain.usage!.completion_tokens, 12);
  assert.equal(plain.kv.method, 'snapkv');
  assert.ok(plain.kv.perHead.kvs.every((n) => n <= 24 + 12), 'snapkv@24 keeps at most its budget plus the new tokens per head');

  const stream = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 0, ignore_eos: true, kv, stream: true, stream_options: { include_usage: true } } as never) as unknown as AsyncIterable<OpenAI.ChatCompletionChunk>;
  let text = '';
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined = null;
  let role: string | undefined;
  for await (const c of stream) {
    if (c.choices[0]?.delta.role) role = c.choices[0].delta.role;
    text += c.choices[0]?.delta.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
    if (c.usage) usage = c.usage;
  }
  assert.equal(role, 'assistant');
  assert.equal(text, plain.choices[0]!.message.content);
  assert.equal(finish, 'length');
  assert.equal(usage?.completion_tokens, 12);
  assert.equal(usage?.prompt_tokens, plain.usage!.prompt_tokens);

  const lib = engine.generate({ messages }, { maxTokens: 12, temperature: 0, ignoreEos: true, kv });
  for await (const _ of lib) { /* drain */ }
  assert.equal(text, lib.text, 'the server streams what the library generates');
  assert.ok(text.length > 0);
});

test('completions, streamed and not, from text and from token ids', async () => {
  const ids = await promptTokens(200, 3);
  const plain = await client.completions.create({ model: MODEL, prompt: ids, max_tokens: 10, temperature: 0, ignore_eos: true } as never) as OpenAI.Completion;
  assert.equal(plain.object, 'text_completion');
  assert.equal(plain.usage!.prompt_tokens, ids.length);
  const stream = await client.completions.create({ model: MODEL, prompt: ids, max_tokens: 10, temperature: 0, ignore_eos: true, stream: true } as never) as unknown as AsyncIterable<OpenAI.Completion>;
  let text = '';
  for await (const c of stream) text += c.choices[0]?.text ?? '';
  assert.equal(text, plain.choices[0]!.text);
  const lib = engine.generate({ tokens: ids }, { maxTokens: 10, temperature: 0, ignoreEos: true });
  for await (const _ of lib) { /* drain */ }
  assert.equal(text, lib.text);

  const fromText = await client.completions.create({ model: MODEL, prompt: 'The value of key 5 is', max_tokens: 4, temperature: 0, ignore_eos: true } as never) as OpenAI.Completion;
  assert.equal(fromText.usage!.completion_tokens, 4);
  const stop = await client.completions.create({ model: MODEL, prompt: ids, max_tokens: 10, temperature: 0, ignore_eos: true, stop: [plain.choices[0]!.text.slice(2, 3)] } as never) as OpenAI.Completion;
  assert.equal(stop.choices[0]!.finish_reason, 'stop');
  assert.ok(plain.choices[0]!.text.startsWith(stop.choices[0]!.text));
});

test('seeded sampling is reproducible; models lists the served model', async () => {
  const ids = await promptTokens(120, 9);
  const ask = () => client.completions.create({ model: MODEL, prompt: ids, max_tokens: 16, temperature: 1.2, top_p: 0.95, seed: 1234, ignore_eos: true } as never) as Promise<OpenAI.Completion>;
  const [a, b] = await Promise.all([ask(), ask()]);
  assert.equal(a.choices[0]!.text, b.choices[0]!.text);
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [MODEL]);
});

test('an AbortController cancels a streaming request and its blocks return to the pool', async () => {
  const ids = await promptTokens(1500, 4);
  const ac = new AbortController();
  const stream = await client.completions.create({ model: MODEL, prompt: ids, max_tokens: 4000, temperature: 0, ignore_eos: true, stream: true } as never, { signal: ac.signal }) as unknown as AsyncIterable<OpenAI.Completion>;
  let n = 0;
  try {
    for await (const _ of stream) {
      if (++n === 5) {
        assert.ok(server.host.gauge('blocksInUse') > 0, 'the request holds blocks while it runs');
        ac.abort();
      }
    }
  } catch (e) {
    // The client ends the iteration, or throws its abort error.
    assert.ok((e as Error).name === 'APIUserAbortError' || (e as Error).name === 'AbortError', String(e));
  }
  assert.equal(n, 5, 'no token after the abort');
  assert.equal(await poolDrained(server), 0, 'the pool is back to zero blocks');
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  assert.match(metrics, /^vllm:request_success_total\{finished_reason="abort",model_name="rocketkv-tiny"\} 1$/m, 'the request ended as aborted, not after its 4000 tokens');
});

test('bad requests raise the client\'s error classes', async () => {
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], temperature: 7 }), (e) => e instanceof OpenAI.BadRequestError && /temperature/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: 'gpt-9', messages: [{ role: 'user', content: 'hi' }] }), (e) => e instanceof OpenAI.NotFoundError && /gpt-9/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], kv: { method: 'nope', budget: 8 } } as never), (e) => e instanceof OpenAI.BadRequestError && /unknown KV method 'nope'/.test(e.message));
  const wrongKey = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'not-the-key', maxRetries: 0 });
  await assert.rejects(wrongKey.models.list(), (e) => e instanceof OpenAI.AuthenticationError && /incorrect API key/.test(e.message));
  const ids = await promptTokens(9000, 1);
  await assert.rejects(client.completions.create({ model: MODEL, prompt: ids, max_tokens: 4 }), (e) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded');
});

test('/metrics exports vLLM\'s names, and /health says ready', async () => {
  const h = await fetch(`${server.url}/health`);
  assert.equal(h.status, 200);
  assert.deepEqual(await h.json(), { status: 'ready' });
  const text = await (await fetch(`${server.url}/metrics`)).text();
  for (const name of [
    'vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc', 'vllm:gpu_cache_usage_perc',
    'vllm:prompt_tokens_total', 'vllm:generation_tokens_total', 'vllm:num_preemptions_total',
    'vllm:time_to_first_token_seconds_bucket', 'vllm:time_per_output_token_seconds_bucket', 'vllm:inter_token_latency_seconds_bucket',
    'vllm:e2e_request_latency_seconds_bucket', 'vllm:request_success_total',
  ]) {
    assert.match(text, new RegExp(`^${name}\\{[^}]*model_name="${MODEL}"[^}]*\\} `, 'm'), name);
  }
  const generated = Number(/^vllm:generation_tokens_total\{model_name="rocketkv-tiny"\} (\d+)$/m.exec(text)?.[1]);
  assert.ok(generated > 40, `tokens generated so far: ${generated}`);
  assert.match(text, /^vllm:kv_cache_usage_perc\{model_name="rocketkv-tiny"\} 0$/m, 'no block in use between requests');
});
