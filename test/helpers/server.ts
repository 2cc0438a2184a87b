/** A server on the bundled model, listening on a free loopback port, for the server tests. */
import { RocketServer, type ServeOptions } from '../../src/server/app.ts';
import { bundledModelDir } from '../../src/cli/default-model.ts';
import { Tokenizer } from '../../src/model/tokenizer.ts';
import { keyValuePrompt } from './prompts.ts';
import { sseData } from '../../src/server/sse.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI_ENTRY } from './cli.ts';

export const MODEL = 'rocketkv-tiny';

export async function startTestServer(opts: Partial<ServeOptions> = {}): Promise<RocketServer> {
  const s = await RocketServer.start({ modelName: MODEL, port: 0, ...opts, load: { model: bundledModelDir(), threads: 2, ...opts.load } });
  await s.host.ready;
  return s;
}

let tok: Tokenizer | null = null;
/** Key-value prompts as token ids (the bundled model answers them with varied digits). */
export async function promptTokens(n: number, seed: number): Promise<number[]> {
  tok ??= await Tokenizer.load(bundledModelDir());
  return keyValuePrompt(tok, n, seed);
}

/** Waits until the engine's pool holds no block (requests' blocks are freed between steps). */
export async function poolDrained(s: RocketServer, timeoutMs = 10_000): Promise<number> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (s.host.gauge('blocksInUse') === 0 && s.host.inFlight === 0) return 0;
    await new Promise((r) => setTimeout(r, 20));
  }
  return s.host.gauge('blocksInUse');
}

/** The events of a server-sent event stream, parsed; `done` when it closed with [DONE]. */
export async function readSse(res: Response, onEvent?: (ev: Record<string, unknown>, n: number) => boolean | void): Promise<{ events: Record<string, unknown>[]; done: boolean }> {
  const events: Record<string, unknown>[] = [];
  let done = false;
  for await (const data of sseData(res.body!)) {
    if (data === '[DONE]') { done = true; continue; }
    const ev = JSON.parse(data) as Record<string, unknown>;
    events.push(ev);
    if (onEvent?.(ev, events.length) === false) return { events, done };
  }
  return { events, done };
}

/** The text of a completion stream's events. */
export function streamText(events: Record<string, unknown>[]): string {
  let s = '';
  for (const ev of events) {
    const c = (ev.choices as { text?: string; delta?: { content?: string } }[] | undefined)?.[0];
    s += c?.text ?? c?.delta?.content ?? '';
  }
  return s;
}

/** Starts `rocketkv serve` on a free port; resolves with its URL once /health says ready. */
export async function startCliServer(args: string[]): Promise<{ child: ChildProcess; url: string; stderr: () => string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI_ENTRY, 'serve', '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`the server exited (${code}): ${err}`)));
  });
  for (;;) {
    const r = await fetch(`${url}/health`).catch(() => null);
    if (r?.status === 200) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, url, stderr: () => err, exited };
}

