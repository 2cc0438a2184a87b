/**
 * Prometheus metrics under vLLM's names, so routers (the Gateway API inference extension, llm-d)
 * and dashboards built for vLLM read them as they are. KV usage is physical blocks in use after
 * compression over the pool's capacity.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EngineHost } from './engine-host.ts';
import type { FinishReason } from '../engine/engine.ts';

const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const E2E_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly promptTokens: Counter;
  readonly generationTokens: Counter;
  readonly ttft: Histogram;
  readonly tpot: Histogram;
  readonly itl: Histogram;
  readonly e2e: Histogram;
  readonly success: Counter<'finished_reason'>;
  private readonly labels: { model_name: string };

  constructor(host: EngineHost, modelName: string) {
    const registers = [this.registry];
    this.labels = { model_name: modelName };
    this.registry.setDefaultLabels(this.labels);
    new Gauge({ name: 'vllm:num_requests_running', help: 'Requests admitted by the scheduler (prefilling or decoding).', registers, collect() { this.set(host.gauge('running')); } });
    new Gauge({ name: 'vllm:num_requests_waiting', help: 'Requests queued for admission.', registers, collect() { this.set(host.gauge('waiting')); } });
    const usage = (): number => {
      const cap = host.gauge('capacityBlocks');
      return cap > 0 ? host.gauge('blocksInUse') / cap : 0;
    };
    new Gauge({ name: 'vllm:kv_cache_usage_perc', help: 'KV pool blocks in use (after compression) over its capacity, 0 to 1.', registers, collect() { this.set(usage()); } });
    new Gauge({ name: 'vllm:gpu_cache_usage_perc', help: 'Same as vllm:kv_cache_usage_perc (the name older routers read).', registers, collect() { this.set(usage()); } });
    let seenPreemptions = 0;
    new Counter({
      name: 'vllm:num_preemptions_total', help: 'Requests preempted (their work dropped and recomputed later).', registers,
      collect() {
        const now = host.gauge('preemptions');
        if (now > seenPreemptions) { this.inc(now - seenPreemptions); seenPreemptions = now; }
      },
    });
    this.promptTokens = new Counter({ name: 'vllm:prompt_tokens_total', help: 'Prompt tokens processed.', registers });
    this.generationTokens = new Counter({ name: 'vllm:generation_tokens_total', help: 'Tokens generated.', registers });
    this.ttft = new Histogram({ name: 'vllm:time_to_first_token_seconds', help: 'Time from arrival to the first generated token.', buckets: TTFT_BUCKETS, registers });
    this.tpot = new Histogram({ name: 'vllm:time_per_output_token_seconds', help: 'Time between generated tokens of a request.', buckets: TPOT_BUCKETS, registers });
    this.itl = new Histogram({ name: 'vllm:inter_token_latency_seconds', help: 'Time between generated tokens of a request.', buckets: TPOT_BUCKETS, registers });
    this.e2e = new Histogram({ name: 'vllm:e2e_request_latency_seconds', help: 'Time from arrival to the end of a request.', buckets: E2E_BUCKETS, registers });
    this.success = new Counter({ name: 'vllm:request_success_total', help: 'Requests finished, by reason.', labelNames: ['finished_reason'], registers });
  }

  /** One generated token, `gap` seconds after the previous one (null for the first). */
  token(gap: number | null): void {
    this.generationTokens.inc();
    if (gap !== null) { this.tpot.observe(gap); this.itl.observe(gap); }
  }

  /** A request that ended without its reply: cancelled by its client or by a shutdown, or failed (its prompt is not counted: it may not have run). */
  aborted(seconds: number): void {
    this.success.inc({ finished_reason: 'abort' });
    this.e2e.observe(seconds);
  }

  finished(reason: FinishReason, promptTokens: number, seconds: number): void {
    this.promptTokens.inc(promptTokens);
    this.success.inc({ finished_reason: reason === 'eos' ? 'stop' : reason === 'cancelled' ? 'abort' : reason });
    this.e2e.observe(seconds);
  }
}
