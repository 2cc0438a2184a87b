/**
 * Streams text while watching for stop strings: text that could still turn into a stop string
 * is held back until it cannot, so no caller ever sees part of a stop string.
 */
export class StopMatcher {
  private pending = '';
  private readonly stops: string[];
  private readonly hold: number;
  stopped = false;

  constructor(stops: string[] = []) {
    this.stops = stops.filter((s) => s.length > 0);
    this.hold = this.stops.reduce((m, s) => Math.max(m, s.length - 1), 0);
  }

  /** Add text; returns what can be emitted now. Sets `stopped` once a stop string appears. */
  push(text: string): string {
    if (this.stopped) return '';
    this.pending += text;
    let cut = -1;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      const out = this.pending.slice(0, cut);
      this.pending = '';
      return out;
    }
    const emit = this.pending.length - this.hold;
    if (emit <= 0) return '';
    const out = this.pending.slice(0, emit);
    this.pending = this.pending.slice(emit);
    return out;
  }

  /** Whatever is held back, at the end of generation. */
  flush(): string {
    const out = this.stopped ? '' : this.pending;
    this.pending = '';
    return out;
  }
}
