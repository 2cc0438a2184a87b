/**
 * llama.cpp as the speed peer of `bench model`, in a child process (peer-child.ts) that keeps the
 * model loaded across rounds and answers one request at a time over Node's IPC channel.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RocketError } from '../errors.ts';

export interface PeerLoadRequest {
  type: 'load';
  gguf: string;
  threads: number;
  /** KV cache size of the peer's context, in tokens. */
  contextTokens: number;
  /** Prompt tokens per forward call (llama.cpp's batch size). */
  batchTokens: number;
}
export type PeerRequest = PeerLoadRequest | { type: 'run'; tokens: number[]; genTokens: number } | { type: 'exit' };

export interface PeerInfo {
  binding: 'node-llama-cpp' | '@fugood/llama.node';
  version: string;
  /** Which llama.cpp build runs: prebuilt or local, release, the per-ISA CPU library loaded. */
  build: string;
  /** The instruction sets that build reports (llama.cpp's system info). */
  cpuFeatures: string;
  threads: number;
  kvCache: string;
  batchTokens: number;
}

export interface PeerRunResult {
  prefillMs: number;
  decodeMs: number;
  /** Prompt tokens llama.cpp evaluated. */
  promptTokens: number;
  /** Decode forward passes timed in decodeMs (generated tokens - 1 when timed around the stream). */
  decodeSteps: number;
  /** Greedy token ids (empty when the binding does not give ids). */
  generated: number[];
  note?: string;
}

export type PeerReply =
  | { type: 'loaded'; info: PeerInfo; loadMs: number; warning?: string }
  | { type: 'result'; result: PeerRunResult }
  | { type: 'error'; message: string };

/** The llama.cpp peer failed to load or to run, or its process died. */
export class PeerError extends RocketError {
  constructor(message: string) { super(message, 'PEER'); }
}

export class LlamaCppPeer {
  /** Set once the child has loaded the model. */
  info!: PeerInfo;
  loadMs = 0;
  /** Set when the peer is not a fair speed peer (the fallback binding). */
  warning?: string;
  private stderr = '';
  private pending: { resolve: (r: PeerReply) => void; reject: (e: Error) => void } | null = null;
  private exited = false;

  private constructor(private readonly child: ChildProcess) {
    child.stderr?.on('data', (b: Buffer) => { this.stderr = (this.stderr + b.toString()).slice(-3000); });
    child.on('message', (m) => this.settle()?.resolve(m as PeerReply));
    child.on('exit', (code, signal) => {
      this.exited = true;
      this.settle()?.reject(new PeerError(`the llama.cpp child process ended (${signal ?? `exit ${code}`}) without answering${this.stderrTail()}`));
    });
  }

  /** Forks the child and loads the model in it; loading is not part of any timing. */
  static async start(o: Omit<PeerLoadRequest, 'type'>): Promise<LlamaCppPeer> {
    // Same extension as this module: .ts under tsx (the child gets tsx too), .js once compiled.
    const ts = import.meta.url.endsWith('.ts');
    const script = fileURLToPath(new URL(`./peer-child${ts ? '.ts' : '.js'}`, import.meta.url));
    const child = fork(script, [], { execArgv: ts ? ['--import', import.meta.resolve('tsx')] : [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    const peer = new LlamaCppPeer(child);
    try {
      const reply = await peer.request({ type: 'load', ...o });
      if (reply.type !== 'loaded') throw new PeerError(`llama.cpp did not load ${o.gguf}: ${reply.type === 'error' ? reply.message : reply.type}`);
      peer.info = reply.info;
      peer.loadMs = reply.loadMs;
      peer.warning = reply.warning;
      return peer;
    } catch (e) {
      await peer.close();
      throw e;
    }
  }

  /** Greedy generation of `genTokens` tokens after `tokens`, from an empty cache; evaluation is timed in the child. */
  async run(tokens: number[], genTokens: number): Promise<PeerRunResult> {
    const reply = await this.request({ type: 'run', tokens, genTokens });
    if (reply.type !== 'result') throw new PeerError(`llama.cpp run failed: ${reply.type === 'error' ? reply.message : reply.type}`);
    return reply.result;
  }

  /** Ends the child (it exits without tearing llama.cpp down). */
  async close(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    if (this.child.connected) this.child.send({ type: 'exit' } satisfies PeerRequest);
    await Promise.race([done, new Promise<void>((resolve) => setTimeout(resolve, 5000).unref())]);
    if (!this.exited) this.child.kill('SIGKILL');
  }

  private settle(): { resolve: (r: PeerReply) => void; reject: (e: Error) => void } | null {
    const p = this.pending;
    this.pending = null;
    return p;
  }

  private stderrTail(): string {
    const t = this.stderr.trim();
    return t ? `:\n${t}` : '';
  }

  private request(req: PeerRequest): Promise<PeerReply> {
    if (this.exited) return Promise.reject(new PeerError(`the llama.cpp child process has ended${this.stderrTail()}`));
    if (this.pending) return Promise.reject(new PeerError('one llama.cpp request at a time'));
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.child.send(req);
    });
  }
}
