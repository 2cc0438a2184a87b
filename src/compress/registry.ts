import { UsageError } from '../errors.ts';
import type { CompressionParts, MethodContext, MethodEntry, OptionSpec, OptionValues } from './method.ts';
import { fullEntry } from './full.ts';
import { streamingLlmEntry } from './streaming_llm.ts';
import { snapkvEntry } from './snapkv.ts';
import { snapkvppEntry } from './snapkvpp.ts';
import { pyramidkvEntry } from './pyramidkv.ts';
import { adakvEntry } from './adakv.ts';
import { kvcompressEntry } from './kvcompress.ts';
import { questEntry } from './quest.ts';
import { sparqEntry } from './sparq.ts';
import { hybridEntry } from './hybrid.ts';
import { exactTopkEntry } from './exact_topk.ts';
import { rocketkvEntry, rocketkvMtEntry } from './rocketkv.ts';
import { knormEntry } from './knorm.ts';
import { tovaEntry } from './tova.ts';
import { expectedAttentionEntry } from './expected_attention.ts';
import { duoEntry } from './duo.ts';

/** Every method by name. Each entry holds its defaults; every knob is settable. */
const ENTRIES: MethodEntry[] = [
  fullEntry,
  rocketkvEntry,
  rocketkvMtEntry,
  kvcompressEntry,
  streamingLlmEntry,
  snapkvEntry,
  snapkvppEntry,
  pyramidkvEntry,
  adakvEntry,
  knormEntry,
  tovaEntry,
  expectedAttentionEntry,
  duoEntry,
  questEntry,
  sparqEntry,
  hybridEntry,
  exactTopkEntry,
];

export function registerMethod(entry: MethodEntry): void {
  if (ENTRIES.some((e) => e.name === entry.name)) throw new Error(`method ${entry.name} registered twice`);
  ENTRIES.push(entry);
}

export function methodEntries(): readonly MethodEntry[] {
  return ENTRIES;
}

export function methodNames(): string[] {
  return ENTRIES.map((e) => e.name);
}

/** A request's compression: `{ method, budget, ...options }` as the library API takes it. */
export interface CompressionRequest {
  method: string;
  budget?: number;
  [option: string]: unknown;
}

export interface ResolvedCompression {
  entry: MethodEntry;
  budget: number;
  options: OptionValues;
}

function describe(spec: OptionSpec): string {
  if (spec.type === 'string' && spec.choices) return `one of ${spec.choices.join('|')}`;
  const bounds = spec.min !== undefined || spec.max !== undefined ? ` in [${spec.min ?? '-inf'}, ${spec.max ?? 'inf'}]` : '';
  return `${spec.type === 'int' ? 'an integer' : spec.type === 'number' ? 'a number' : spec.type === 'boolean' ? 'true or false' : 'a string'}${bounds}`;
}

/** Check one option value (typed, or a string from the command line) against its spec. */
export function coerceOption(method: string, key: string, spec: OptionSpec, raw: unknown): number | boolean | string {
  const bad = (): never => { throw new UsageError(`${method}: option ${key} must be ${describe(spec)}, got ${JSON.stringify(raw)}`); };
  let v: unknown = raw;
  if (typeof raw === 'string' && spec.type !== 'string') {
    if (spec.type === 'boolean') v = raw === 'true' ? true : raw === 'false' ? false : bad();
    else v = raw.trim() === '' ? bad() : Number(raw);
  }
  switch (spec.type) {
    case 'boolean':
      if (typeof v !== 'boolean') bad();
      return v as boolean;
    case 'string':
      if (typeof v !== 'string' || (spec.choices && !spec.choices.includes(v))) bad();
      return v as string;
    case 'int':
    case 'number': {
      if (typeof v !== 'number' || !Number.isFinite(v) || (spec.type === 'int' && !Number.isInteger(v))) bad();
      const n = v as number;
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) bad();
      return n;
    }
  }
}

/** Validate a request fully (method, budget, every option) before any work starts. */
export function resolveCompression(req: CompressionRequest): ResolvedCompression {
  const entry = ENTRIES.find((e) => e.name === req.method);
  if (!entry) throw new UsageError(`unknown KV method '${req.method}'; choose one of: ${methodNames().join(', ')}`);
  let budget = Number.POSITIVE_INFINITY;
  if (entry.name !== 'full' || req.budget !== undefined) {
    const b = req.budget;
    if (typeof b !== 'number' || !Number.isInteger(b) || b <= 0) {
      throw new UsageError(`${entry.name}: the KV budget must be a positive integer number of tokens, got ${JSON.stringify(b)}`);
    }
    budget = b;
  }
  const options: OptionValues = {};
  for (const [key, spec] of Object.entries(entry.options)) options[key] = spec.default;
  for (const [key, raw] of Object.entries(req)) {
    if (key === 'method' || key === 'budget' || raw === undefined) continue;
    const spec = entry.options[key];
    if (!spec) {
      const valid = Object.keys(entry.options);
      throw new UsageError(`${entry.name}: unknown option '${key}'; valid options: ${valid.length ? valid.join(', ') : '(none)'}`);
    }
    options[key] = coerceOption(entry.name, key, spec, raw);
  }
  // Checks that need several options at once (an odd pooling kernel, ...) live in the factories:
  // build the method once on a stand-in context so they fail now, not at the first request.
  entry.create(
    {
      budget: Number.isFinite(budget) ? budget : 1 << 20,
      promptLength: 4096,
      maxNewTokens: 128,
      shape: { numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 64 },
      maxPositionEmbeddings: 8192,
      blockSlots: 16,
      ropeInvFreq: Float32Array.from({ length: 32 }, (_, i) => Math.pow(10000, -(2 * i) / 64)),
      validateOnly: true,
    },
    options,
  );
  return { entry, budget, options };
}

export function createCompression(resolved: ResolvedCompression, ctx: Omit<MethodContext, 'budget'>): CompressionParts {
  return resolved.entry.create({ ...ctx, budget: resolved.budget }, resolved.options);
}

/**
 * A method with its own options in one word, for lists that compare variants side by side:
 * `name` or `name:key=value[:key=value...]` (e.g. `kvcompress:pooling=max`). Option values stay
 * strings; resolveCompression checks them.
 */
export function parseMethodSpec(spec: string): { method: string; options: Record<string, string> } {
  const [method, ...pairs] = spec.split(':');
  const options: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new UsageError(`method '${spec}': options follow the name as :key=value, got '${p}' (e.g. kvcompress:pooling=max)`);
    options[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return { method: method!, options };
}

/** `key=value` pairs from the command line into a request's options (values stay strings). */
export function parseOptionPairs(pairs: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs ?? []) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new UsageError(`--kv-opt takes key=value, got '${p}'`);
    out[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return out;
}
