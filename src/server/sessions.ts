/**
 * Multi-turn caches on the engine thread. A request that names a session (the X-Session-Id
 * header) runs as a turn of that session's conversation when its prompt's tokens start with every
 * token the session's cache holds (the earlier prompt and reply) and it asks for the same KV
 * method: only the new tokens are prefilled. Otherwise the session starts over with this request.
 *
 * Idle caches hold pool blocks, so they are given back: the least recently used ones whenever a
 * request cannot be admitted for want of blocks (the scheduler asks), any idle past the time limit,
 * and the oldest when there are too many.
 */
import type { Conversation, Engine, GenerateOptions, Generation } from '../engine/engine.ts';

interface Session {
  conv: Conversation;
  /** Every token the cache holds, in order (empty until the first turn ends). */
  tokens: number[];
  kvKey: string;
  busy: boolean;
  lastUsed: number;
}

export interface SessionTurn {
  gen: Generation;
  /** Prompt tokens taken from the cache rather than prefilled. */
  cachedTokens: number;
  /** Records what the cache holds once the turn has ended well, or drops the session after a failure. */
  ended(ok: boolean): void;
}

function startsWith(a: number[], prefix: number[]): boolean {
  if (prefix.length === 0 || prefix.length >= a.length) return false;
  for (let i = 0; i < prefix.length; i++) if (a[i] !== prefix[i]) return false;
  return true;
}

export class SessionCache {
  private readonly sessions = new Map<string, Session>();

  constructor(private readonly engine: Engine, readonly maxSessions: number, readonly idleMs: number) {}

  get size(): number { return this.sessions.size; }

  /** Runs `tokens` as a turn of session `id` (a new conversation when its cache cannot serve it). */
  turn(id: string, tokens: number[], opts: GenerateOptions): SessionTurn | null {
    const kvKey = JSON.stringify(opts.kv ?? { method: 'full' });
    let s = this.sessions.get(id);
    // Two requests of one session at once: the second runs on its own.
    if (s?.busy) return null;
    let cached = 0;
    if (s && s.kvKey === kvKey && startsWith(tokens, s.tokens)) {
      cached = s.tokens.length;
    } else {
      if (s) this.drop(id);
      this.trim(this.maxSessions - 1);
      s = { conv: this.engine.conversation(opts.kv ?? { method: 'full' }), tokens: [], kvKey, busy: false, lastUsed: 0 };
      this.sessions.set(id, s);
    }
    let gen: Generation;
    try {
      gen = s.conv.send({ tokens: tokens.slice(cached) }, opts);
    } catch (e) {
      if (cached === 0) this.drop(id);
      throw e;
    }
    s.busy = true;
    const session = s;
    return {
      gen,
      cachedTokens: cached,
      ended: (ok) => {
        session.busy = false;
        session.lastUsed = Date.now();
        if (!ok || !gen.stats || this.sessions.get(id) !== session) { if (this.sessions.get(id) === session) this.drop(id); return; }
        session.tokens = [...tokens, ...gen.tokens, ...(gen.stats.eosToken !== undefined ? [gen.stats.eosToken] : [])];
      },
    };
  }

  /** Gives back every cache idle past the time limit. */
  expire(): void {
    const now = Date.now();
    for (const [id, s] of this.sessions) if (!s.busy && now - s.lastUsed > this.idleMs) this.drop(id);
  }

  /** A request waits for blocks: gives back the least recently used idle cache; false when none is idle. */
  reclaim(): boolean {
    const lru = this.idleByAge()[0];
    if (lru === undefined) return false;
    this.drop(lru);
    return true;
  }

  closeAll(): void {
    for (const id of [...this.sessions.keys()]) this.drop(id);
  }

  private idleByAge(): string[] {
    return [...this.sessions].filter(([, s]) => !s.busy).sort((a, b) => a[1].lastUsed - b[1].lastUsed).map(([id]) => id);
  }

  private trim(keep: number): void {
    const idle = this.idleByAge();
    while (this.sessions.size > Math.max(0, keep) && idle.length > 0) this.drop(idle.shift()!);
  }

  private drop(id: string): void {
    this.sessions.get(id)?.conv.close();
    this.sessions.delete(id);
  }
}
