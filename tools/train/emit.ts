/**
 * Writes RULER-style training samples as JSONL from the project's TypeScript task generators
 * (src/eval/ruler/index.ts generateSample), so training and evaluation share one source of truth.
 *
 *   node --import tsx tools/train/emit.ts --out data.jsonl --n 2000 --lengths 256,512,1024 --seed 1
 *
 * Each line: {task, index, seed, length, input, contextChars (UTF-16 length of the context part), target, references, maxNewTokens, depth, generator}.
 * `target` is the text the model should produce after `input` (references in the task's answer
 * format); train.py tokenizes input/target itself, so sizing here only needs to be approximate:
 * by default samples are sized with a byte-level tokenizer (1 token per UTF-8 byte), which
 * over-counts versus BPE, so samples come out shorter than `length` BPE tokens, never longer.
 * Pass --tokenizer DIR (a directory with tokenizer.json) to size with the real tokenizer instead.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';

interface TextTokenizer { encode(text: string): number[] }
interface Sample {
  task: string; index: number; seed: number; length: number;
  context: string; input: string; answerPrefix: string; references: string[]; maxNewTokens: number; depth?: number;
}
interface Generators {
  TASKS: string[];
  generateSample(task: string, o: { length: number; seed: number; index: number; tokenizer: TextTokenizer; depth?: number }): Sample;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const realPath = path.join(here, '..', '..', 'src', 'eval', 'ruler', 'index.ts');

async function loadGenerators(which: string): Promise<{ gen: Generators; name: string }> {
  if (which !== 'stub' && fs.existsSync(realPath)) {
    return { gen: (await import(realPath)) as Generators, name: 'ruler' };
  }
  if (which === 'ruler') throw new Error(`${realPath} does not exist yet; use --generator stub`);
  return { gen: (await import(path.join(here, 'ruler_stub.ts'))) as Generators, name: 'stub' };
}

const byteTokenizer: TextTokenizer = {
  encode: (text) => Array.from(Buffer.from(text, 'utf8')),
};

/** The answer text in the form each task's prompt asks for; string_match_all needs each reference verbatim. */
export function targetText(s: Sample): string {
  const lead = s.answerPrefix.endsWith(' ') ? '' : ' ';
  if (s.task === 'vt') return lead + s.references.join(' ');
  if (s.task === 'cwe' || s.task === 'fwe') return s.references.map((w, i) => ` ${i + 1}. ${w}`).join('').slice(lead ? 0 : 1);
  return lead + s.references.join(', ') + '.';
}

/** xorshift32 for the length/task schedule: same seed, same file. */
function scheduleRng(seed: number): () => number {
  let x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 4294967296; };
}

async function main(): Promise<void> {
  const cmd = new Command()
    .requiredOption('--out <file>', 'JSONL output path')
    .option('--n <count>', 'samples to write', (v) => parseInt(v, 10), 1000)
    .option('--tasks <list>', 'comma-separated task names (default: every task the generators offer)')
    .option('--lengths <list>', 'comma-separated target lengths in tokens, drawn uniformly per sample', '512')
    .option('--seed <n>', 'generator seed', (v) => parseInt(v, 10), 1)
    .option('--tokenizer <dir>', 'size samples with this tokenizer.json directory instead of bytes')
    .option('--bytes-per-token <x>', 'size by UTF-8 bytes / x (fast approximation of the BPE; train.py drops samples that overflow)', parseFloat, 1)
    .option('--generator <which>', 'auto (real if present, else stub), ruler, or stub', 'auto')
    .parse(process.argv);
  const o = cmd.opts<{ out: string; n: number; tasks?: string; lengths: string; seed: number; tokenizer?: string; generator: string; bytesPerToken: number }>();
  const { gen, name } = await loadGenerators(o.generator);
  const tasks = o.tasks ? o.tasks.split(',') : gen.TASKS;
  for (const t of tasks) if (!gen.TASKS.includes(t)) throw new Error(`unknown task ${t}; known: ${gen.TASKS.join(', ')}`);
  const lengths = o.lengths.split(',').map((v) => parseInt(v, 10));
  let tokenizer = byteTokenizer;
  if (o.bytesPerToken !== 1) {
    const bpt = o.bytesPerToken;
    tokenizer = { encode: (text: string) => new Array<number>(Math.ceil(Buffer.byteLength(text, 'utf8') / bpt)).fill(0) };
  }
  if (o.tokenizer) {
    const { Tokenizer } = await import(path.join(here, '..', '..', 'src', 'model', 'tokenizer.ts'));
    const tk = await Tokenizer.load(o.tokenizer);
    tokenizer = { encode: (text: string) => tk.encode(text, { addSpecialTokens: false }) };
  }
  const rand = scheduleRng(o.seed);
  const fd = fs.openSync(o.out, 'w');
  const t0 = Date.now();
  for (let i = 0; i < o.n; i++) {
    const task = tasks[Math.floor(rand() * tasks.length)]!;
    const length = lengths[Math.floor(rand() * lengths.length)]!;
    const s = gen.generateSample(task, { length, seed: o.seed, index: i, tokenizer });
    const line = { task, index: i, seed: o.seed, length, input: s.input, contextChars: s.context.length, target: targetText(s), references: s.references,
      maxNewTokens: s.maxNewTokens, depth: s.depth ?? null, generator: name };
    fs.writeSync(fd, JSON.stringify(line) + '\n');
  }
  fs.closeSync(fd);
  process.stderr.write(`emit: ${o.n} samples (${name} generators, ${o.tokenizer ? 'tokenizer' : o.bytesPerToken !== 1 ? `bytes/${o.bytesPerToken}` : 'byte'} sizing) -> ${o.out} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}

await main();
