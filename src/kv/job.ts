// The record of one paged-attention job: JOB_FIELDS i32 fields, JOB_BYTES apart. This file is
// compiled by both TypeScript (src/kv/attend.ts writes the records) and AssemblyScript
// (assembly/attention.ts reads them), so the layout is written once.

/** Byte offset of the job's first query row (rowStride floats to the next row). */
export const JOB_Q = 0;
/** Byte offset of the job's first output row. */
export const JOB_OUT = 1;
/** Byte offset of the stored head's i32 block table. */
export const JOB_TABLE = 2;
/** Keys the job's last row sees (earlier rows see one fewer each). */
export const JOB_KEYS = 3;
/** Byte offset of an i32 slot list to read (0: slots 0..keys-1 in order). */
export const JOB_SLOTS = 4;
/** Query rows of the job. */
export const JOB_ROWS = 5;
/** Byte offset of the job's score scratch (keys floats). */
export const JOB_SCRATCH = 6;
export const JOB_FIELDS = 8;
export const JOB_BYTES = 32;
