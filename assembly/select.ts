// Decode-time selection (RocketKV stage 2): per page, the sum over a GQA group of the softmax over
// TOKENS of the approximate scores, every token carrying its page's score (rocket.py): the
// normaliser counts each page once per token it holds (pageSize, the last page lastCount). f64
// throughout, in the same order of operations as the TypeScript fallback in src/compress/hybrid.ts,
// so both pick the same tokens.
import { HYBRID_JOB_COUNT, HYBRID_JOB_FIELDS } from '../src/compress/hybrid-job';
//   sub  f64 [pages, r]: per page, the summary side (min or max) of each chosen channel
//   qc   f64 [G, r]:     each query head's values at the chosen channels
//   temp f64 [G]:        SparQ temperature per query head
//   out  f64 [pages]:    result, the probability of each token of the page; tmp f64 [pages]: scratch
export function pageSoftmaxSum(out: usize, sub: usize, qc: usize, temp: usize, tmp: usize, pages: i32, r: i32, G: i32, pageSize: i32, lastCount: i32): void {
  for (let p = 0; p < pages; p++) store<f64>(out + (<usize>p << 3), 0);
  for (let g = 0; g < G; g++) {
    const qg = qc + (<usize>(g * r) << 3);
    const t = load<f64>(temp + (<usize>g << 3));
    let max = -Infinity;
    for (let p = 0; p < pages; p++) {
      const sp = sub + (<usize>(p * r) << 3);
      let dot: f64 = 0;
      for (let j = 0; j < r; j++) dot += load<f64>(qg + (<usize>j << 3)) * load<f64>(sp + (<usize>j << 3));
      const v = dot / t;
      store<f64>(tmp + (<usize>p << 3), v);
      if (v > max) max = v;
    }
    addPageSoftmax(out, tmp, pages, max, pageSize, lastCount);
  }
}

/**
 * out[p] += the softmax over TOKENS of the page scores tmp[p] (max their largest): every token
 * carries its page's score, so the normaliser counts a page pageSize times (the last lastCount).
 * tmp is overwritten with the exponentials.
 */
// @ts-ignore: decorator
@inline function addPageSoftmax(out: usize, tmp: usize, pages: i32, max: f64, pageSize: i32, lastCount: i32): void {
  let sum: f64 = 0;
  for (let p = 0; p < pages; p++) {
    const e = Math.exp(load<f64>(tmp + (<usize>p << 3)) - max);
    store<f64>(tmp + (<usize>p << 3), e);
    sum += e * <f64>(p == pages - 1 ? lastCount : pageSize);
  }
  for (let p = 0; p < pages; p++) {
    const o = out + (<usize>p << 3);
    store<f64>(o, load<f64>(o) + load<f64>(tmp + (<usize>p << 3)) / sum);
  }
}

/**
 * pageSoftmaxSum with `sub` channel-major (f64 [r, pages]), two pages per f64x2 and eight per pass
 * over the channels, their sums held in registers. Each page's dot still adds its channels one
 * after another from 0 (j ascending, multiply then add, no fused multiply-add), the normaliser
 * still sums pages in order, and exp is the same scalar Math.exp, so the results are bit-for-bit
 * those of pageSoftmaxSum and of the TypeScript fallback.
 */
function pageSoftmaxSumT(out: usize, sub: usize, qc: usize, temp: usize, tmp: usize, pages: i32, r: i32, G: i32, pageSize: i32, lastCount: i32): void {
  const pairs = pages & ~1;
  for (let p = 0; p < pages; p++) store<f64>(out + (<usize>p << 3), 0);
  for (let g = 0; g < G; g++) {
    const qg = qc + (<usize>(g * r) << 3);
    // Eight pages at a time in registers over every channel, then pairs, then the odd last page.
    const rowBytes = <usize>pages << 3;
    let p = 0;
    for (; p + 8 <= pages; p += 8) {
      let a0 = f64x2.splat(0), a1 = f64x2.splat(0), a2 = f64x2.splat(0), a3 = f64x2.splat(0);
      let col = sub + (<usize>p << 3);
      for (let j = 0; j < r; j++) {
        const qv = v128.load64_splat(qg + (<usize>j << 3));
        a0 = f64x2.add(a0, f64x2.mul(qv, v128.load(col)));
        a1 = f64x2.add(a1, f64x2.mul(qv, v128.load(col, 16)));
        a2 = f64x2.add(a2, f64x2.mul(qv, v128.load(col, 32)));
        a3 = f64x2.add(a3, f64x2.mul(qv, v128.load(col, 48)));
        col += rowBytes;
      }
      const o = tmp + (<usize>p << 3);
      v128.store(o, a0); v128.store(o, a1, 16); v128.store(o, a2, 32); v128.store(o, a3, 48);
    }
    for (; p < pairs; p += 2) {
      let a = f64x2.splat(0);
      let col = sub + (<usize>p << 3);
      for (let j = 0; j < r; j++) {
        a = f64x2.add(a, f64x2.mul(v128.load64_splat(qg + (<usize>j << 3)), v128.load(col)));
        col += rowBytes;
      }
      v128.store(tmp + (<usize>p << 3), a);
    }
    if (p < pages) {
      let a: f64 = 0;
      for (let j = 0; j < r; j++) a += load<f64>(qg + (<usize>j << 3)) * load<f64>(sub + (<usize>(j * pages + p) << 3));
      store<f64>(tmp + (<usize>p << 3), a);
    }
    const t = load<f64>(temp + (<usize>g << 3));
    let max = -Infinity;
    for (let p = 0; p < pages; p++) {
      const o = tmp + (<usize>p << 3);
      const v = load<f64>(o) / t;
      store<f64>(o, v);
      if (v > max) max = v;
    }
    addPageSoftmax(out, tmp, pages, max, pageSize, lastCount);
  }
}

// ---------------------------------------------------------------------------------------------
// hybridSelect: the whole of RocketKV stage 2's per-step choice for one stored head, so no loop
// over its pages or slots runs in TypeScript. Same rules and f64 order of operations as
// HybridSelector.select in src/compress/hybrid.ts (its fallback without a runtime):
//   1. channels: the r largest sum_g |q_g[i]| (ties to the lower channel), ascending;
//   2. per page, each channel's summary side by the sign of sum_g q_g[c] (max if > 0, else min);
//   3. pageSoftmaxSum over those (SparQ temperature per query head);
//   4. whole pages by score (ties to the lower page) until topk tokens, the last cut to its
//      lowest slots; plus the last localWindow slots; written ascending to `slots`.
// Returns the slot count, or -1 when every slot is picked (the caller reads the head whole).
// Layout of `ws` (f64 unless noted): abs[d] | sub[r*pages] (channel-major) | qc[G*r] | temp[G] | score[pages] |
// tmp[pages] | chan i32[d] | take i32[pages] | heap i32[pages] (hybridSelectScratch gives the size).

// @ts-ignore: decorator
@inline function align8(b: usize): usize { return (b + 7) & ~(<usize>7); }

export function hybridSelectScratch(d: i32, pages: i32, r: i32, G: i32): usize {
  return align8(<usize>(d + pages * r + G * r + G + 2 * pages) << 3) + (<usize>(d + 2 * pages) << 2) + 64;
}

/** True when page a outranks page b: higher score, ties to the lower page. */
// @ts-ignore: decorator
@inline function outranks(score: usize, a: i32, b: i32): bool {
  const sa = load<f64>(score + (<usize>a << 3));
  const sb = load<f64>(score + (<usize>b << 3));
  return sa > sb || (sa == sb && a < b);
}

function siftDown(heap: usize, score: usize, i: i32, size: i32): void {
  while (true) {
    const l = 2 * i + 1;
    if (l >= size) return;
    let c = l;
    const r = l + 1;
    if (r < size && outranks(score, load<i32>(heap + (<usize>r << 2)), load<i32>(heap + (<usize>l << 2)))) c = r;
    const hi = load<i32>(heap + (<usize>i << 2));
    const hc = load<i32>(heap + (<usize>c << 2));
    if (!outranks(score, hc, hi)) return;
    store<i32>(heap + (<usize>i << 2), hc);
    store<i32>(heap + (<usize>c << 2), hi);
    i = c;
  }
}

export function hybridSelect(
  slots: usize, q: usize, minp: usize, maxp: usize, ws: usize,
  G: i32, d: i32, pages: i32, P: i32, n: i32, r: i32, topk: i32, localWindow: i32,
): i32 {
  const abs = ws;
  const sub = abs + (<usize>d << 3);
  const qc = sub + (<usize>(pages * r) << 3);
  const temp = qc + (<usize>(G * r) << 3);
  const score = temp + (<usize>G << 3);
  const tmp = score + (<usize>pages << 3);
  const chan = align8(tmp + (<usize>pages << 3));
  const take = chan + (<usize>d << 2);
  const heap = take + (<usize>pages << 2);

  // 1. Channels.
  for (let i = 0; i < d; i++) {
    let s: f64 = 0;
    for (let g = 0; g < G; g++) s += Math.abs(<f64>load<f32>(q + (<usize>(g * d + i) << 2)));
    store<f64>(abs + (<usize>i << 3), s);
  }
  // The r largest, ties to the lower channel: chan[i] = 1 marks a chosen channel, then chan
  // is rewritten in place as the ascending list of the chosen ones.
  for (let i = 0; i < d; i++) store<i32>(chan + (<usize>i << 2), 0);
  for (let j = 0; j < r; j++) {
    let best = -1;
    let bv: f64 = 0;
    for (let i = 0; i < d; i++) {
      if (load<i32>(chan + (<usize>i << 2)) != 0) continue;
      const v = load<f64>(abs + (<usize>i << 3));
      if (best < 0 || v > bv) { best = i; bv = v; }
    }
    store<i32>(chan + (<usize>best << 2), 1);
  }
  let m = 0;
  for (let i = 0; i < d; i++) if (load<i32>(chan + (<usize>i << 2)) != 0) { store<i32>(chan + (<usize>m << 2), i); m++; }

  // 2. Summary sides, the group's values at the channels, temperatures.
  for (let j = 0; j < r; j++) {
    const c = load<i32>(chan + (<usize>j << 2));
    let s: f64 = 0;
    for (let g = 0; g < G; g++) s += <f64>load<f32>(q + (<usize>(g * d + c) << 2));
    const side = s > 0 ? maxp : minp;
    // Channel-major ([r, pages]) so step 3 runs over pages two lanes at a time.
    for (let p = 0; p < pages; p++) {
      store<f64>(sub + (<usize>(j * pages + p) << 3), <f64>load<f32>(side + (<usize>(p * d + c) << 2)));
    }
  }
  for (let g = 0; g < G; g++) {
    let absAll: f64 = 0;
    for (let i = 0; i < d; i++) absAll += Math.abs(<f64>load<f32>(q + (<usize>(g * d + i) << 2)));
    let absCh: f64 = 0;
    for (let j = 0; j < r; j++) {
      const v = <f64>load<f32>(q + (<usize>(g * d + load<i32>(chan + (<usize>j << 2))) << 2));
      store<f64>(qc + (<usize>(g * r + j) << 3), v);
      absCh += Math.abs(v);
    }
    store<f64>(temp + (<usize>g << 3), absAll > 0 && absCh > 0 ? Math.sqrt((<f64>d * absCh) / absAll) : 1);
  }

  // 3. Page scores.
  const lastCount = n - (pages - 1) * P;
  pageSoftmaxSumT(score, sub, qc, temp, tmp, pages, r, G, P, lastCount);

  // 4. Pages by score until topk tokens (a max-heap of page indices).
  for (let p = 0; p < pages; p++) {
    store<i32>(take + (<usize>p << 2), 0);
    store<i32>(heap + (<usize>p << 2), p);
  }
  for (let i = (pages >> 1) - 1; i >= 0; i--) siftDown(heap, score, i, pages);
  let size = pages;
  let left = topk;
  while (left > 0 && size > 0) {
    const p = load<i32>(heap);
    size--;
    store<i32>(heap, load<i32>(heap + (<usize>size << 2)));
    siftDown(heap, score, 0, size);
    const sz = min(P, n - p * P);
    const t = min(sz, left);
    store<i32>(take + (<usize>p << 2), t);
    left -= t;
  }
  const localFrom = max(0, n - localWindow);
  let count = 0;
  for (let p = 0; p < pages; p++) {
    const t = load<i32>(take + (<usize>p << 2));
    const end = min(n, (p + 1) * P);
    for (let s = p * P; s < end; s++) {
      if (s - p * P < t || s >= localFrom) {
        store<i32>(slots + (<usize>count << 2), s);
        count++;
      }
    }
  }
  return count >= n ? -1 : count;
}


/**
 * hybridSelect for several stored heads at once, one record each (16 i32: slots, q, min, max, ws,
 * G, d, pages, P, n, r, topk, localWindow, count out, 2 unused), over records [start, end): every
 * thread takes heads from the same list, each head computed exactly as a hybridSelect call alone.
 */
export function hybridSelectJobs(table: usize, start: i32, end: i32): void {
  for (let j = start; j < end; j++) {
    const rec = table + (<usize>(j * HYBRID_JOB_FIELDS) << 2);
    const count = hybridSelect(
      <usize>load<i32>(rec), <usize>load<i32>(rec, 4), <usize>load<i32>(rec, 8), <usize>load<i32>(rec, 12), <usize>load<i32>(rec, 16),
      load<i32>(rec, 20), load<i32>(rec, 24), load<i32>(rec, 28), load<i32>(rec, 32), load<i32>(rec, 36),
      load<i32>(rec, 40), load<i32>(rec, 44), load<i32>(rec, 48),
    );
    store<i32>(rec + (<usize>HYBRID_JOB_COUNT << 2), count);
  }
}

// ---------------------------------------------------------------------------------------------
// questSelect: Quest's per-step page choice for one stored head (src/compress/quest.ts, the same
// rules and f64 order as questPageBounds + topKSelect + pageSlots there). Per page the bound
// U = sum_i max(q_i min_i, q_i max_i); `sets` = 1: one set whose bound is the max over the G query
// heads; `sets` = G: one set per query head. Each set: the `want` pages of largest bound (ties to
// the lower page), their slots ascending, written to slots + s * n (i32); counts i32 [sets].
// ws: bound f64 [pages] | heap i32 [pages] | mark i32 [pages] (questSelectScratch gives the size).

export function questSelectScratch(pages: i32): usize {
  return (<usize>pages << 3) + (<usize>pages << 3) + 64;
}

export function questSelect(
  slots: usize, counts: usize, q: usize, minp: usize, maxp: usize, ws: usize,
  G: i32, d: i32, pages: i32, P: i32, n: i32, want: i32, sets: i32,
): void {
  const bound = ws;
  const heap = bound + (<usize>pages << 3);
  const mark = heap + (<usize>pages << 2);
  const per = sets == 1 ? G : 1;
  for (let s = 0; s < sets; s++) {
    for (let p = 0; p < pages; p++) store<f64>(bound + (<usize>p << 3), -Infinity);
    for (let gi = 0; gi < per; gi++) {
      const qo = q + (<usize>((s * per + gi) * d) << 2);
      for (let p = 0; p < pages; p++) {
        const so = <usize>(p * d) << 2;
        let u: f64 = 0;
        for (let i = 0; i < d; i++) {
          const qi = <f64>load<f32>(qo + (<usize>i << 2));
          const a = qi * <f64>load<f32>(minp + so + (<usize>i << 2));
          const b = qi * <f64>load<f32>(maxp + so + (<usize>i << 2));
          u += a > b ? a : b;
        }
        if (u > load<f64>(bound + (<usize>p << 3))) store<f64>(bound + (<usize>p << 3), u);
      }
    }
    // The want largest bounds, ties to the lower page.
    for (let p = 0; p < pages; p++) {
      store<i32>(heap + (<usize>p << 2), p);
      store<i32>(mark + (<usize>p << 2), 0);
    }
    for (let i = (pages >> 1) - 1; i >= 0; i--) siftDown(heap, bound, i, pages);
    let size = pages;
    for (let j = 0; j < want && size > 0; j++) {
      store<i32>(mark + (<usize>load<i32>(heap) << 2), 1);
      size--;
      store<i32>(heap, load<i32>(heap + (<usize>size << 2)));
      siftDown(heap, bound, 0, size);
    }
    let count = 0;
    const out = slots + (<usize>(s * n) << 2);
    for (let p = 0; p < pages; p++) {
      if (load<i32>(mark + (<usize>p << 2)) == 0) continue;
      const end = min(n, (p + 1) * P);
      for (let t = p * P; t < end; t++) { store<i32>(out + (<usize>count << 2), t); count++; }
    }
    store<i32>(counts + (<usize>s << 2), count);
  }
}
