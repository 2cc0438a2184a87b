/**
 * The server end to end under one KV memory limit: N streaming clients at once over loopback HTTP,
 * per method, on one `rocketkv serve` engine. Prints total generated tokens/s (wall clock, first
 * request sent to last stream closed), the ratio to the first method, the most requests running at
 * once, and p50/p99 time to first token. Rounds alternate the order of the methods.
 */
import { RocketServer } from '../server/app.ts';
import { sseData } from '../server/sse.ts';
import type { CompressionRequest } from '../compress/registry.ts';
import { openModelSource } from '../model/source.ts';
import type { WeightFormat } from '../model/weights.ts';
import { fmtBytes } from '../kv/pool.ts';
import { benchPrompt } from './model.ts';
import { methodLabel } from './serve.ts';

export interface HttpBenchOptions {
  model: string;
  kvMemoryBytes: number;
  clients: number;
  promptTokens: number;
  newTokens: number;
  methods: CompressionRequest[];
  rounds: number;
  threads?: number;
  weights?: WeightFormat;
  log: (line: string) => void;
}

export interface HttpMethodReport {
  label: string;
  tokensPerSecond: number;
  ratioToFirst: number;
  maxRunning: number;
  ttftP50: number;
  ttftP99: number;
  rounds: { seconds: number; tokens: number; ttft: number[] }[];
}

function quantile(sorted: number[], q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * q) - 1)]! : NaN;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** One client: streams a completion, returns its time to first token (ms) and tokens received. */
async function client(url: string, body: unknown): Promise<{ ttft: number; tokens: number }> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (res.status !== 200) throw new Error(`the server answered ${res.status}: ${await res.text()}`);
  let ttft = NaN;
  let tokens = 0;
  for await (const data of sseData(res.body!)) {
    if (data === '[DONE]') continue;
    const ev = JSON.parse(data) as { error?: { message: string }; usage?: { completion_tokens: number }; choices: { text: string }[] };
    if (ev.error) throw new Error(`a stream ended with an error: ${ev.error.message}`);
    if (ev.usage) tokens = ev.usage.completion_tokens;
    if (Number.isNaN(ttft) && ev.choices[0]?.text) ttft = performance.now() - t0;
  }
  return { ttft, tokens };
}

export async function benchHttp(o: HttpBenchOptions): Promise<{ methods: HttpMethodReport[]; kvLimitBytes: number; threads: number; kernels: string }> {
  const tokenizer = await (await openModelSource(o.model)).loadTokenizer();
  const prompt = benchPrompt(tokenizer, o.promptTokens);
  const server = await RocketServer.start({ modelName: 'bench', port: 0, load: { model: o.model, threads: o.threads, weights: o.weights, kvMemoryBytes: o.kvMemoryBytes } });
  try {
    const info = await server.host.ready;
    o.log(
      `${o.clients} streaming clients at once over loopback HTTP, each ${prompt.length} prompt tokens (real prefill) + ${o.newTokens} new; ` +
        `KV limit ${fmtBytes(info.kvCapacityBytes)}, ${info.weightFormat} weights, ${info.threads} threads, ${info.kernels} kernels`,
    );
    const reports: HttpMethodReport[] = o.methods.map((m) => ({ label: methodLabel(m), tokensPerSecond: 0, ratioToFirst: 0, maxRunning: 0, ttftP50: 0, ttftP99: 0, rounds: [] }));
    for (let round = 0; round < o.rounds; round++) {
      const order = o.methods.map((_, i) => i);
      if (round % 2 === 1) order.reverse();
      for (const mi of order) {
        const body = { model: 'bench', prompt, max_tokens: o.newTokens, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true }, kv: o.methods[mi] };
        let maxRunning = 0;
        const sampler = setInterval(() => { maxRunning = Math.max(maxRunning, server.host.gauge('running')); }, 5);
        const t0 = performance.now();
        const results = await Promise.all(Array.from({ length: o.clients }, () => client(server.url, body)));
        const seconds = (performance.now() - t0) / 1000;
        clearInterval(sampler);
        const tokens = results.reduce((s, r) => s + r.tokens, 0);
        const r = reports[mi]!;
        r.maxRunning = Math.max(r.maxRunning, maxRunning);
        r.rounds.push({ seconds, tokens, ttft: results.map((x) => x.ttft) });
        o.log(`round ${round + 1} ${r.label}: ${tokens} tokens in ${seconds.toFixed(1)} s (${(tokens / seconds).toFixed(1)} tokens/s), at most ${maxRunning} running`);
      }
    }
    for (const r of reports) {
      r.tokensPerSecond = median(r.rounds.map((x) => x.tokens / x.seconds));
      const ttft = r.rounds.flatMap((x) => x.ttft).sort((a, b) => a - b);
      r.ttftP50 = quantile(ttft, 0.5);
      r.ttftP99 = quantile(ttft, 0.99);
    }
    for (const r of reports) r.ratioToFirst = r.tokensPerSecond / reports[0]!.tokensPerSecond;
    o.log('');
    o.log('| method | most running | tokens/s | vs first | TTFT p50 | TTFT p99 |');
    o.log('|---|---|---|---|---|---|');
    for (const r of reports) {
      o.log(`| ${r.label} | ${r.maxRunning} | ${r.tokensPerSecond.toFixed(1)} | ${r.ratioToFirst.toFixed(2)}x | ${(r.ttftP50 / 1000).toFixed(2)} s | ${(r.ttftP99 / 1000).toFixed(2)} s |`);
    }
    return { methods: reports, kvLimitBytes: info.kvCapacityBytes, threads: info.threads, kernels: info.kernels };
  } finally {
    await server.shutdown(0);
  }
}
