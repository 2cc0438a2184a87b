/**
 * The engine thread: loads the model, runs the scheduler, and streams each request's events to
 * the HTTP thread. Requests arrive already validated in shape; the engine checks the rest
 * (prompt length against the context, the KV forecast against the limit) before any work.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Engine, type Generation } from '../engine/engine.ts';
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
  sched.onStep = publish;
  publish();

  port.on('message', (m: ToEngine) => {
    if (m.type === 'submit') {
      const abort = new AbortController();
      let gen: Generation;
      let promptTokens: number;
      try {
        const tokens = engine.encodePrompt(m.input);
        promptTokens = tokens.length;
        gen = engine.submit({ tokens }, { ...m.opts, signal: abort.signal });
      } catch (e) {
        send({ type: 'failed', id: m.id, accepted: false, error: toWireError(e) });
        return;
      }
      live.set(m.id, { gen, abort });
      send({ type: 'accepted', id: m.id, promptTokens });
      publish();
      void (async () => {
        try {
          for await (const ev of gen) send({ type: 'token', id: m.id, token: ev.token, text: ev.text });
          send({ type: 'done', id: m.id, text: gen.text, stats: gen.stats! });
        } catch (e) {
          send({ type: 'failed', id: m.id, accepted: true, error: toWireError(e) });
        } finally {
          live.delete(m.id);
        }
      })();
    } else if (m.type === 'cancel') {
      live.get(m.id)?.abort.abort(new Error('the client cancelled the request'));
    } else if (m.type === 'close') {
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
