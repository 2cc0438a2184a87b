// The record of one matrix in gemmQ8Many's table: Q8_MANY_FIELDS i32 fields at these offsets. This
// file is compiled by both TypeScript (src/runtime/kernels.ts writes the records) and
// AssemblyScript (assembly/quant.ts reads them), so the layout is written once.

export const Q8_MANY_FIELDS = 6;
/** Output, int8 values and scales (Q8Weight.qs, .scales), bias (0: none). */
export const Q8_MANY_OUT = 0;
export const Q8_MANY_QS = 1;
export const Q8_MANY_SCALES = 2;
export const Q8_MANY_BIAS = 3;
/** Rows of the matrix. */
export const Q8_MANY_N = 4;
/** Its first group in the concatenated range: the groups of the records before it. */
export const Q8_MANY_FIRST = 5;
