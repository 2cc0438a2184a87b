// The record of one hybridSelectJobs head: HYBRID_JOB_FIELDS i32 fields (slots, q, min, max, ws,
// G, d, pages, P, n, r, topk, localWindow, the count written back, 2 unused). This file is compiled
// by both TypeScript (src/compress/hybrid.ts writes the records) and AssemblyScript
// (assembly/select.ts reads them), so the layout is written once.

export const HYBRID_JOB_FIELDS = 16;
/** Field the kernel writes the head's slot count into (-1: every slot). */
export const HYBRID_JOB_COUNT = 13;
