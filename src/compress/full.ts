/** full: keep every KV and attend to every KV. The reference every other method must equal when its budget covers the sequence. */
import type { MethodEntry } from './method.ts';

export const fullEntry: MethodEntry = {
  name: 'full',
  summary: 'no compression: every KV is kept and read (the reference)',
  options: {},
  create: () => ({}),
};
