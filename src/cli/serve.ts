import { basename } from 'node:path';
import { UsageError } from '../errors.ts';
import { resolveCompression } from '../compress/registry.ts';
import { RocketServer } from '../server/app.ts';
import { resolveModelOption } from './default-model.ts';
import { progressBar } from './progress.ts';
import { parseBytes, parseWeightFormat } from './common.ts';
import { kvRequestFromFlags, type EngineFlags } from './run.ts';

export interface ServeCommandOptions extends EngineFlags {
  servedModelName?: string;
  host: string;
  port: number;
  apiKey?: string;
  maxQueued: number;
  maxTokens?: number;
  bodyLimit: string;
  shutdownGrace: number;
  maxSessions: number;
  sessionIdle: number;
}

/** The API's model id: --served-model-name, else the repo id or file name the model was given as. */
export function defaultModelName(model: string | undefined): string {
  if (model === undefined) return 'rocketkv-tiny';
  const name = /^[\w.-]+\/[\w.-]+(:.*)?$/.test(model) && !model.startsWith('.') ? model.replace(/:.*$/, '') : basename(model).replace(/\.gguf$/i, '');
  return name || model;
}

export async function serveCommand(opts: ServeCommandOptions): Promise<void> {
  const kvDefault = kvRequestFromFlags(opts.kvMethod, opts.kvBudget, opts.kvOpt);
  resolveCompression(kvDefault);
  const apiKey = opts.apiKey ?? process.env.ROCKETKV_API_KEY;
  if (apiKey !== undefined && apiKey.trim() === '') throw new UsageError('--api-key is empty; give a key or leave the flag out');
  const dir = await resolveModelOption(opts.model);
  const log = (line: string): void => { process.stderr.write(`rocketkv serve: ${line}\n`); };
  const bar = progressBar('loading');
  const server = await RocketServer.start({
    load: {
      model: dir,
      threads: opts.threads,
      weights: parseWeightFormat(opts.weights),
      maxContextTokens: opts.ctx,
      kvMemoryBytes: opts.kvMemory === undefined ? undefined : parseBytes('kv-memory', opts.kvMemory),
    },
    modelName: opts.servedModelName ?? defaultModelName(opts.model),
    host: opts.host,
    port: opts.port,
    apiKey,
    kvDefault,
    maxQueued: opts.maxQueued,
    defaultMaxTokens: opts.maxTokens,
    bodyLimit: parseBytes('body-limit', opts.bodyLimit),
    shutdownGraceMs: opts.shutdownGrace * 1000,
    maxSessions: opts.maxSessions,
    sessionIdleSeconds: opts.sessionIdle,
    log,
    onLoadProgress: (done, total) => bar.update(done, total),
  });
  log(`listening on ${server.url} (model loading; /health answers 503 until it is ready)`);
  // Signals stop the server at any point, the model's load included.
  let stopped: Promise<void> | null = null;
  const done = new Promise<void>((resolve) => {
    const stop = (sig: string): void => {
      if (stopped) {
        log(`${sig} again: exiting now`);
        process.exit(1);
      }
      log(`${sig}: stopping`);
      stopped = server.shutdown().then(resolve);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  try {
    const info = await server.host.ready;
    if (opts.maxTokens !== undefined && opts.maxTokens > info.maxContextTokens) {
      throw new UsageError(`--max-tokens ${opts.maxTokens} is more than the model's context of ${info.maxContextTokens} tokens; lower it`);
    }
  } catch (e) {
    bar.stop();
    if (stopped) { await stopped; return; }
    await server.shutdown(0);
    throw e;
  } finally {
    bar.stop();
  }
  await done;
}
