/**
 * The engine thread: loads the model, runs the scheduler, and streams each request's events to
 * the HTTP thread. Requests arrive already validated in shape; the engine checks the rest
 * (prompt length against the context, the KV forecast against the limit) before any work.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Engine, type GenerateOptions, type Generation } from '../engine/engine.ts';
import { SessionCache, type SessionTurn } from './sessions.ts';
import { gaugeIndex, toWireError, type EngineLoad, type FromEngine, type ToEngine } from './protocol.ts';

interface Init { load: EngineLoad; gauges: SharedArrayBuffer }

const port = parentPort!;
const init = workerData as Init;
const gauges = new Float64Array(init.gauges);
const send = (m: FromEngine): void => port.postMessage(m);
const live = new Map<number, { gen: Generation; abort: AbortController }>();

async function main(): Promise<void> {
  let engine: Engine;
  try {
    engine = await Engine.load(init.load.model, {
      threads: init.load.threads,
      weights: init.load.weights,
      maxContextTokens: init.load.maxContextTokens,
      kvMemoryBytes: init.load.kvMemoryBytes,
      onProgress: (p) => send({ type: 'progress', done: p.done, total: p.total }),
    });
  } catch (e) {
    send({ type: 'load-failed', error: toWireError(e) });
    return;
  }
  const sched = engine.scheduler;
  const publish = (): void => {
    gauges[gaugeIndex('running')] = sched.runningCount;
    gauges[gaugeIndex('waiting')] = sched.waitingCount;
    gauges[gaugeIndex('blocksInUse')] = engine.pool.blocksInUse;
    gauges[gaugeIndex('capacityBlocks')] = engine.pool.capacityBlocks;
    gauges[gaugeIndex('preemptions')] = sched.stats.preemptions;
    gauges[gaugeIndex('steps')] = sched.stats.steps;
  };
  const maxSessions = init.load.maxSessions ?? 0;
  const sessions = maxSessions > 0 ? new SessionCache(engine, maxSessions, init.load.sessionIdleMs ?? 600_000) : null;
  if (sessions) {
    setInterval(() => sessions.expire(), 10_000).unref();
    // Idle multi-turn caches give their blocks back when a request cannot be admitted without them.
    sched.reclaim = () => sessions.reclaim();
  }
  sched.onStep = publish;
  publish();

  port.on('message', (m: ToEngine) => {
    if (m.type === 'submit') {
      const abort = new AbortController();
      const opts: GenerateOptions = { ...m.opts, signal: abort.signal };
      let gen: Generation;
      let promptTokens: number;
      let turn: SessionTurn | null = null;
      try {
        const tokens = engine.encodePrompt(m.input);
        promptTokens = tokens.length;
        if (m.fitMaxTokens) {
          const n = engine.maxTokensThatFit(tokens.length, opts.kv ?? { method: 'full' }, opts.maxTokens ?? 128);
          if (n > 0) opts.maxTokens = n;
        }
        turn = m.session && sessions ? sessions.turn(m.session, tokens, opts) : null;
        gen = turn ? turn.gen : engine.submit({ tokens }, opts);
      } catch (e) {
        send({ type: 'failed', id: m.id, accepted: false, error: toWireError(e) });
        return;
      }
      live.set(m.id, { gen, abort });
      let accepted = false;
      const accept = (): void => {
        if (accepted) return;
        accepted = true;
        send({ type: 'accepted', id: m.id, promptTokens });
      };
      // A session's turn is checked against the limit when it starts: it is accepted at its first token.
      if (turn === null) accept();
      publish();
      void (async () => {
        try {
          for await (const ev of gen) {
            accept();
            send({ type: 'token', id: m.id, token: ev.token, text: ev.text });
          }
          turn?.ended(true);
          accept();
          send({ type: 'done', id: m.id, text: gen.text, stats: gen.stats!, cachedTokens: turn?.cachedTokens ?? 0 });
        } catch (e) {
          turn?.ended(false);
          send({ type: 'failed', id: m.id, accepted, error: toWireError(e) });
        } finally {
          live.delete(m.id);
        }
      })();
    } else if (m.type === 'cancel') {
      live.get(m.id)?.abort.abort(new Error('the client cancelled the request'));
    } else if (m.type === 'close') {
      sessions?.closeAll();
      for (const r of live.values()) r.abort.abort(new Error('the server is shutting down'));
      void sched.idle().then(() => engine.close()).then(() => {
        publish();
        send({ type: 'closed' });
        port.close();
      });
    }
  });
  send({
    type: 'ready',
    info: {
      dir: engine.dir,
      maxContextTokens: engine.maxContextTokens,
      weightFormat: engine.weightFormat,
      threads: engine.runtime.threads,
      kernels: engine.runtime.kernelBuild,
      kvCapacityBytes: engine.pool.capacityBlocks * engine.pool.blockBytes,
      kvBlockBytes: engine.pool.blockBytes,
      layers: engine.config.numLayers,
      kvHeads: engine.config.numKvHeads,
      vocabSize: engine.config.vocabSize,
    },
  });
}

void main();
