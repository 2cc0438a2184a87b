// Decode-time selection (RocketKV stage 2): per page, the sum over a GQA group of the softmax over
// TOKENS of the approximate scores, every token carrying its page's score (rocket.py): the
// normaliser counts each page once per token it holds (pageSize, the last page lastCount). f64
// throughout, in the same order of operations as the TypeScript fallback in src/compress/hybrid.ts,
// so both pick the same tokens.
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
}
