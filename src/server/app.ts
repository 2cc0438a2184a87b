/**
 * The OpenAI-compatible HTTP server: `/v1/chat/completions`, `/v1/completions`, `/v1/models`,
 * `/health`, `/metrics` and a chat page at `/`. Requests are validated here and run on the engine
 * thread (engine-host.ts), so this thread stays free for probes, connections and cancellations.
 */
import { randomInt, randomUUID, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { z } from 'zod';
import type { FinishReason, PromptInput } from '../engine/engine.ts';
import { resolveCompression, type CompressionRequest } from '../compress/registry.ts';
import { RocketError } from '../errors.ts';
import { EngineError, EngineHost, type RemoteRequest, type RemoteResult } from './engine-host.ts';
import { ServerMetrics } from './metrics.ts';
import { ChatRequest, CompletionRequest, describeIssues, type ChatBody, type CompletionBody } from './schemas.ts';
import type { EngineLoad, WireGenerateOptions } from './protocol.ts';
import { chatPage } from './page.ts';

export interface ServeOptions {
  load: EngineLoad;
  /** The model's id in the API (`model` of requests, `/v1/models`). */
  modelName: string;
  host?: string;
  port?: number;
  /** Requests must carry `Authorization: Bearer <apiKey>` on /v1 routes when set. */
  apiKey?: string;
  /** The KV method of requests without a `kv` field. */
  kvDefault?: CompressionRequest;
  /** Requests queued or running at most; one more gets 429 (default 256). */
  maxQueued?: number;
  /** Largest request body in bytes (default 4 MiB); a larger one gets 413. */
  bodyLimit?: number;
  /** max_tokens of requests that give none (default: up to the context). */
  defaultMaxTokens?: number;
  /** Multi-turn caches kept for the X-Session-Id header (default 64; 0 turns them off). */
  maxSessions?: number;
  /** Seconds an idle session's cache is kept (default 600). */
  sessionIdleSeconds?: number;
  /** On shutdown, how long requests in flight may take to finish before they are cancelled (default 30 s). */
  shutdownGraceMs?: number;
  log?: (line: string) => void;
  onLoadProgress?: (done: number, total: number) => void;
}

/** An error answered in OpenAI's shape: `{ error: { message, type, param, code } }`. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly type: string, readonly code: string | null = null, readonly param: string | null = null) {
    super(message);
  }
}

const badRequest = (message: string, code: string | null = null, param: string | null = null): HttpError => new HttpError(400, message, 'invalid_request_error', code, param);

function errorBody(e: HttpError): { error: { message: string; type: string; param: string | null; code: string | null } } {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}

/** An engine error as the HTTP answer a client can act on. */
function fromEngine(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof EngineError) {
    if (e.kind === 'ContextLengthError') return badRequest(e.message, 'context_length_exceeded', 'messages');
    if (e.kind === 'PoolExhaustedError') return badRequest(e.message, 'kv_memory_exceeded');
    if (e.kind === 'UsageError') return badRequest(e.message);
    return new HttpError(500, e.message, 'server_error', e.code);
  }
  if (e instanceof RocketError) return badRequest(e.message);
  return new HttpError(500, (e as Error).message ?? String(e), 'server_error');
}

function finishReason(r: FinishReason): 'stop' | 'length' {
  return r === 'length' ? 'length' : 'stop';
}

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw badRequest('the request body must be a JSON object');
  }
  const r = schema.safeParse(body);
  if (!r.success) {
    const { message, param } = describeIssues(r.error);
    throw badRequest(message, null, param);
  }
  return r.data;
}

function sameKey(given: string, want: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

export class RocketServer {
  readonly app: FastifyInstance;
  readonly host: EngineHost;
  readonly metrics: ServerMetrics;
  private draining = false;
  private readonly opts: Required<Pick<ServeOptions, 'maxQueued' | 'shutdownGraceMs'>> & ServeOptions;
  private readonly log: (line: string) => void;
  private readonly kvDefault: CompressionRequest;

  private constructor(opts: ServeOptions) {
    this.opts = { maxQueued: 256, shutdownGraceMs: 30_000, ...opts };
    this.log = opts.log ?? (() => {});
    this.kvDefault = opts.kvDefault ?? { method: 'full' };
    resolveCompression(this.kvDefault);
    if (!Number.isInteger(this.opts.maxQueued) || this.opts.maxQueued < 1) throw new RangeError(`max queued requests must be a positive integer, got ${this.opts.maxQueued}`);
    this.host = new EngineHost({ maxSessions: opts.maxSessions ?? 64, sessionIdleMs: (opts.sessionIdleSeconds ?? 600) * 1000, ...opts.load }, opts.onLoadProgress);
    this.metrics = new ServerMetrics(this.host, opts.modelName);
    this.app = Fastify({ bodyLimit: opts.bodyLimit ?? 4 * 2 ** 20, logger: false, return503OnClosing: true });
    // Bodies are JSON only: any other content type is answered 415.
    this.app.removeContentTypeParser('text/plain');
    this.routes();
  }

  /** Starts the engine thread and listens at once: /health answers 503 until the model is loaded. */
  static async start(opts: ServeOptions): Promise<RocketServer> {
    const s = new RocketServer(opts);
    try {
      await s.app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 8080 });
    } catch (e) {
      await s.host.close();
      throw e;
    }
    s.host.ready.then(
      (info) => s.log(`model ${opts.modelName} ready: ${info.weightFormat} weights, ${info.threads} threads, ${info.kernels} kernels, context ${info.maxContextTokens}, KV limit ${info.kvCapacityBytes} B`),
      (e: Error) => s.log(`the model failed to load: ${e.message}`),
    );
    return s;
  }

  /** The address the server listens on, e.g. http://127.0.0.1:8080. */
  get url(): string {
    const a = this.app.server.address();
    if (a === null || typeof a === 'string') throw new Error('the server is not listening');
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  /**
   * Graceful shutdown: stop listening and admitting, let requests in flight finish within the grace
   * period, cancel the rest (their clients get a clean error), then stop the engine thread.
   */
  async shutdown(graceMs = this.opts.shutdownGraceMs): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    const inFlight = this.host.inFlight;
    this.log(`shutting down: ${inFlight} request(s) in flight, ${graceMs} ms to finish`);
    const closed = this.app.close();
    const deadline = Date.now() + graceMs;
    while (this.host.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (this.host.inFlight > 0) this.log(`cancelling ${this.host.inFlight} request(s) still in flight`);
    await this.host.close();
    // Streams end once their requests have; connections still open after that are cut.
    const cut = setTimeout(() => this.app.server.closeAllConnections(), 2_000);
    await closed;
    clearTimeout(cut);
    this.log('stopped');
  }

  private routes(): void {
    const app = this.app;
    app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
      if (err instanceof HttpError) return void reply.code(err.status).send(errorBody(err));
      const status = err.statusCode ?? 500;
      let message = err.message;
      if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') message = `the request body is larger than the limit of ${this.app.initialConfig.bodyLimit} bytes`;
      else if (err instanceof SyntaxError || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY') message = `the request body is not valid JSON: ${err.message}`;
      else if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') message = 'the request body is empty; send a JSON object';
      else if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') message = `unsupported content type ${JSON.stringify(_req.headers['content-type'] ?? '')}; send application/json`;
      const e = new HttpError(status, message, status >= 500 ? 'server_error' : 'invalid_request_error', err.code ?? null);
      reply.code(status).send(errorBody(e));
    });
    app.setNotFoundHandler((req, reply) => {
      reply.code(404).send(errorBody(new HttpError(404, `no route ${req.method} ${req.url.split('?')[0]}`, 'invalid_request_error', 'not_found')));
    });
    app.addHook('onRequest', async (req) => {
      if (!req.url.startsWith('/v1/')) return;
      const key = this.opts.apiKey;
      if (key) {
        const auth = req.headers.authorization ?? '';
        const m = /^Bearer\s+(.+)$/i.exec(auth);
        if (!m) throw new HttpError(401, 'missing API key: send the header "Authorization: Bearer <key>"', 'invalid_request_error', 'invalid_api_key');
        if (!sameKey(m[1]!.trim(), key)) throw new HttpError(401, 'incorrect API key', 'invalid_request_error', 'invalid_api_key');
      }
      if (this.draining) throw new HttpError(503, 'the server is shutting down', 'server_error', 'shutting_down');
      if (this.host.state === 'loading') throw new HttpError(503, 'the model is still loading; retry shortly', 'server_error', 'model_loading');
      if (this.host.state !== 'ready') throw new HttpError(503, `the engine is not available: ${this.host.failure?.message ?? this.host.state}`, 'server_error', 'engine_unavailable');
    });

    app.get('/health', async (_req, reply) => {
      const state = this.draining ? 'shutting_down' : this.host.state;
      reply.code(state === 'ready' ? 200 : 503).send({ status: state });
    });
    app.get('/metrics', async (_req, reply) => {
      reply.type(this.metrics.registry.contentType).send(await this.metrics.registry.metrics());
    });
    app.get('/', async (_req, reply) => {
      reply.type('text/html; charset=utf-8').send(chatPage({ model: this.opts.modelName, needsKey: Boolean(this.opts.apiKey), kv: this.kvDefault }));
    });
    app.get('/v1/models', async () => ({
      object: 'list',
      data: [{ id: this.opts.modelName, object: 'model', created: Math.floor(Date.now() / 1000), owned_by: 'rocketkv', max_model_len: this.host.info?.maxContextTokens }],
    }));
    app.post('/v1/chat/completions', (req, reply) => this.generate(req, reply, 'chat'));
    app.post('/v1/completions', (req, reply) => this.generate(req, reply, 'completion'));
  }

  private async generate(req: FastifyRequest, reply: FastifyReply, kind: 'chat' | 'completion'): Promise<void> {
    const arrived = performance.now();
    const info = this.host.info!;
    const body: ChatBody | CompletionBody = kind === 'chat' ? parseBody(ChatRequest, req.body) : parseBody(CompletionRequest, req.body);
    if (body.model !== this.opts.modelName) {
      throw new HttpError(404, `the model \`${body.model}\` does not exist; this server serves \`${this.opts.modelName}\``, 'invalid_request_error', 'model_not_found', 'model');
    }
    const stream = body.stream === true;
    if (body.stream_options && !stream) throw badRequest('stream_options is only allowed when stream is true', null, 'stream_options');
    const given = (kind === 'chat' ? (body as ChatBody).max_completion_tokens : null) ?? body.max_tokens;
    // Without max_tokens a request generates up to the context, or as many tokens as fit the KV limit.
    const maxTokensDefaulted = given === undefined || given === null;
    const asked = given ?? this.opts.defaultMaxTokens ?? info.maxContextTokens;
    if (asked > info.maxContextTokens) {
      throw badRequest(`max_tokens is ${asked}, more than the model's context of ${info.maxContextTokens} tokens`, null, 'max_tokens');
    }
    let kv: CompressionRequest = this.kvDefault;
    if (body.kv) {
      kv = body.kv as CompressionRequest;
      let entry;
      try {
        entry = resolveCompression(kv).entry;
      } catch (e) {
        throw badRequest(`kv: ${(e as Error).message}`, null, 'kv');
      }
      // No request names a file: options that do are the server's to set.
      const file = Object.keys(kv).find((k) => entry.options[k]?.file);
      if (file) throw badRequest(`kv: option ${file} names a file and cannot be set in a request; the server uses its own`, null, `kv.${file}`);
    }
    let input: PromptInput;
    if (kind === 'chat') {
      const messages = (body as ChatBody).messages.map((m) => ({
        role: m.role === 'developer' ? 'system' : m.role,
        content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join(''),
      }));
      input = { messages };
    } else {
      const p = (body as CompletionBody).prompt;
      if (typeof p === 'string') input = p;
      else if (typeof p[0] === 'string') input = p[0] as string;
      else {
        const tokens = p as number[];
        const bad = tokens.find((t) => t >= info.vocabSize);
        if (bad !== undefined) throw badRequest(`prompt: token id ${bad} is outside the vocabulary of ${info.vocabSize}`, null, 'prompt');
        input = { tokens };
      }
    }
    if (this.host.inFlight >= this.opts.maxQueued) {
      throw new HttpError(429, `the server has ${this.host.inFlight} requests queued or running, its limit; retry later`, 'requests', 'rate_limit_exceeded');
    }
    const opts: WireGenerateOptions = {
      maxTokens: asked,
      temperature: body.temperature ?? 1,
      topP: body.top_p ?? 1,
      topK: Math.max(0, body.top_k ?? 0),
      seed: body.seed === undefined || body.seed === null ? randomInt(2 ** 32) : body.seed >>> 0,
      stop: body.stop === undefined || body.stop === null ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop,
      ignoreEos: body.ignore_eos ?? false,
      kv,
    };

    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replaceAll('-', '')}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.opts.modelName;
    let lastTokenAt: number | null = null;
    let sink: ((text: string) => void) | null = null;
    const early: string[] = [];
    const onToken = (text: string): void => {
      const now = performance.now();
      if (lastTokenAt === null) this.metrics.ttft.observe((now - arrived) / 1000);
      this.metrics.token(lastTokenAt === null ? null : (now - lastTokenAt) / 1000);
      lastTokenAt = now;
      if (sink) sink(text);
      else early.push(text);
    };

    const session = req.headers['x-session-id'];
    if (session !== undefined && (typeof session !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(session))) {
      throw badRequest('the X-Session-Id header must be 1 to 128 printable ASCII characters without spaces', null, 'x-session-id');
    }
    // A client that goes away cancels its request (its blocks return to the pool before the next
    // step), whether it leaves before the engine has accepted the request or after.
    const res = reply.raw;
    let gone = false;
    const leave = new AbortController();
    const onClose = (): void => {
      if (res.writableFinished) return;
      gone = true;
      leave.abort();
    };
    res.on('close', onClose);
    let remote: RemoteRequest;
    try {
      remote = await this.host.submit(input, opts, onToken, { session, fitMaxTokens: maxTokensDefaulted, signal: leave.signal });
    } catch (e) {
      res.off('close', onClose);
      if (gone) { this.metrics.aborted((performance.now() - arrived) / 1000); return; }
      if (this.draining) throw new HttpError(503, 'the server is shutting down', 'server_error', 'shutting_down');
      throw fromEngine(e);
    }
    const accepted = remote;
    const ended = (r: RemoteResult): void => {
      this.metrics.finished(r.stats.finishReason, r.stats.promptTokens, (performance.now() - arrived) / 1000);
    };
    // A session's turn prefills only its new tokens; usage counts the whole prompt, as OpenAI does.
    const usage = (r: RemoteResult) => ({
      prompt_tokens: accepted.promptTokens,
      completion_tokens: r.stats.generatedTokens,
      total_tokens: accepted.promptTokens + r.stats.generatedTokens,
      prompt_tokens_details: { cached_tokens: r.cachedTokens },
    });
    const extras = (r: RemoteResult) => ({
      kv: r.stats.kv,
      timings: { prefill_ms: r.stats.prefillMs, decode_ms: r.stats.decodeMs, preemptions: r.stats.preemptions ?? 0 },
    });

    if (!stream) {
      sink = () => {};
      let r: RemoteResult;
      try {
        r = await accepted.done;
      } catch (e) {
        res.off('close', onClose);
        this.metrics.aborted((performance.now() - arrived) / 1000);
        if (res.destroyed) return;
        const err = fromEngine(e);
        if (this.draining) throw new HttpError(503, err.message, 'server_error', 'shutting_down');
        throw err;
      }
      res.off('close', onClose);
      ended(r);
      const fr = finishReason(r.stats.finishReason);
      const choice = kind === 'chat'
        ? { index: 0, message: { role: 'assistant', content: r.text }, logprobs: null, finish_reason: fr }
        : { index: 0, text: r.text, logprobs: null, finish_reason: fr };
      reply.send({ id, object: kind === 'chat' ? 'chat.completion' : 'text_completion', created, model, choices: [choice], usage: usage(r), ...extras(r) });
      return;
    }

    reply.hijack();
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const event = (data: unknown): void => { if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`); };
    const chunk = (delta: string | null, fr: string | null, more: Record<string, unknown> = {}) => ({
      id, object, created, model,
      choices: [kind === 'chat'
        ? { index: 0, delta: delta === null ? {} : { content: delta }, logprobs: null, finish_reason: fr }
        : { index: 0, text: delta ?? '', logprobs: null, finish_reason: fr }],
      ...more,
    });
    if (kind === 'chat') event({ id, object, created, model, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] });
    sink = (text) => { if (text) event(chunk(text, null)); };
    for (const t of early.splice(0)) sink(t);
    try {
      const r = await accepted.done;
      ended(r);
      event(chunk(null, finishReason(r.stats.finishReason), extras(r)));
      if (body.stream_options?.include_usage) event({ id, object, created, model, choices: [], usage: usage(r) });
      if (!res.destroyed) res.write('data: [DONE]\n\n');
    } catch (e) {
      this.metrics.aborted((performance.now() - arrived) / 1000);
      const err = fromEngine(e);
      const status = this.draining || this.host.state !== 'ready' ? 503 : err.status;
      event(errorBody(new HttpError(status, err.message, status === 503 ? 'server_error' : err.type, this.draining ? 'shutting_down' : err.code)));
    } finally {
      res.off('close', onClose);
      res.end();
    }
  }
}
