/** RULER's string-match metrics, per sample in [0, 1]; the caller averages over samples and scales x100. */

/** Fraction of references found (case-insensitive substring) in the prediction (RULER string_match_all). */
export function stringMatchAll(prediction: string, references: readonly string[]): number {
  if (references.length === 0) return 0;
  const p = prediction.toLowerCase();
  let found = 0;
  for (const r of references) if (p.includes(r.toLowerCase())) found++;
  return found / references.length;
}

/** 1 when any reference is found (case-insensitive substring) in the prediction, else 0 (RULER string_match_part). */
export function stringMatchPart(prediction: string, references: readonly string[]): number {
  const p = prediction.toLowerCase();
  return references.some((r) => p.includes(r.toLowerCase())) ? 1 : 0;
}
