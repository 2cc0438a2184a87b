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
 * Pass --tokenizer DIR (a directory with tokenizer.json) to size with the real tokenizer instead (exact,
 * ~10 samples/s at 4K tokens), or --calibrate DIR to measure each task's bytes per token with that
 * tokenizer once (one sample per task and length) and size by bytes from then on (~1000 samples/s,
 * within a few percent, erring short).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';

interface TextTokenizer { encode(text: string): number[] }
interface Sample {
  task: string; index: number; seed: number; length: number;
  context: string; input: string; answerPrefix: string; references: string[]; maxNewTokens: number; depth?: number;
  turns?: { question: string; answerPrefix: string; references: string[] }[];
}
interface Generators {
  TASKS: string[];
  generateSample(task: string, o: { length: number; seed: number; index: number; tokenizer: TextTokenizer; depth?: number; turns?: number }): Sample;
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
export function targetText(s: Pick<Sample, 'task' | 'answerPrefix' | 'references'>): string {
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
    .option('--calibrate <dir>', 'size by UTF-8 bytes / (per-task bytes per token measured once with this tokenizer.json directory)')
    .option('--multi-turn <p>', 'share of niah samples asked 2..--max-turns questions of one context (lines get `followups`)', parseFloat, 0)
    .option('--max-turns <k>', 'most questions in a multi-turn sample', (v) => parseInt(v, 10), 4)
    .option('--generator <which>', 'auto (real if present, else stub), ruler, or stub', 'auto')
    .parse(process.argv);
  const o = cmd.opts<{ out: string; n: number; tasks?: string; lengths: string; seed: number; tokenizer?: string; generator: string; bytesPerToken: number; calibrate?: string; multiTurn: number; maxTurns: number }>();
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
  const perTask = new Map<string, TextTokenizer>();
  if (o.calibrate) {
    const { Tokenizer } = await import(path.join(here, '..', '..', 'src', 'model', 'tokenizer.ts'));
    const tk = await Tokenizer.load(o.calibrate);
    const exact: TextTokenizer = { encode: (text: string) => tk.encode(text, { addSpecialTokens: false }) };
    // Bytes per token depend on the task and on the length (haystacks repeat more or less), so measure each pair.
    for (const task of tasks) {
      for (const length of lengths) {
        let s: Sample;
        try {
          s = gen.generateSample(task, { length, seed: o.seed + 7777, index: 0, tokenizer: exact });
        } catch {
          continue; // too short for this task: skipped below
        }
        const ratio = (Buffer.byteLength(s.input, 'utf8') / exact.encode(s.input).length) * 0.98;
        perTask.set(`${task}@${length}`, { encode: (text: string) => new Array<number>(Math.ceil(Buffer.byteLength(text, 'utf8') / ratio)).fill(0) });
      }
    }
  }
  // Tasks whose smallest prompt does not fit a length are skipped at that length (one note each).
  const fits = new Map<number, string[]>();
  for (const length of lengths) {
    const ok = tasks.filter((task) => {
      try {
        gen.generateSample(task, { length, seed: o.seed + 7777, index: 0, tokenizer: perTask.get(`${task}@${length}`) ?? tokenizer });
        return true;
      } catch {
        process.stderr.write(`emit: ${task} does not fit in ${length} tokens; skipped at that length\n`);
        return false;
      }
    });
    if (!ok.length) throw new Error(`no task fits in ${length} tokens; use larger lengths`);
    fits.set(length, ok);
  }
  const rand = scheduleRng(o.seed);
  const fd = fs.openSync(o.out, 'w');
  const t0 = Date.now();
  let skipped = 0;
  for (let i = 0, written = 0; written < o.n; i++) {
    if (skipped > o.n) throw new Error('most samples do not fit their length; use larger lengths');
    const task0 = tasks[Math.floor(rand() * tasks.length)]!;
    const length = lengths[Math.floor(rand() * lengths.length)]!;
    const ok = fits.get(length)!;
    const task = ok.includes(task0) ? task0 : ok[Math.floor(rand() * ok.length)]!;
    let s: Sample;
    const turns = o.multiTurn > 0 && task.startsWith('niah') && rand() < o.multiTurn ? 2 + Math.floor(rand() * (o.maxTurns - 1)) : 1;
    const sizing = perTask.get(`${task}@${length}`) ?? tokenizer;
    try {
      try {
        // Each turn reserves its answer tokens (128 for niah) though a training answer is ~10: grow the length by
        // that reserve plus the question so that the context keeps about the size of a single-turn sample.
        const grown = turns > 1 ? length + (turns - 1) * (128 + 72) : length;
        s = gen.generateSample(task, { length: grown, seed: o.seed, index: i, tokenizer: sizing, ...(turns > 1 ? { turns } : {}) });
      } catch (e) {
        if (turns === 1) throw e;
        s = gen.generateSample(task, { length, seed: o.seed, index: i, tokenizer: sizing }); // every turn reserves its answer tokens: too short for several
      }
    } catch {
      skipped++; // this draw's smallest prompt does not fit (sizes vary a little per sample)
      continue;
    }
    written++;
    const line = { task, index: i, seed: o.seed, length, input: s.input, contextChars: s.context.length, target: targetText(s), references: s.references,
      maxNewTokens: s.maxNewTokens, depth: s.depth ?? null, generator: name,
      // Later questions: each follows the previous answer and its </s> in the same sequence.
      ...(s.turns ? { followups: s.turns.slice(1).map((t) => ({ input: t.question + t.answerPrefix, target: targetText({ task, ...t }) })) } : {}) };
    fs.writeSync(fd, JSON.stringify(line) + '\n');
  }
  fs.closeSync(fd);
  process.stderr.write(`emit: ${o.n} samples${skipped ? ` (${skipped} draws too long for their length skipped)` : ''} (${name} generators, ${o.calibrate ? 'calibrated' : o.tokenizer ? 'tokenizer' : o.bytesPerToken !== 1 ? `bytes/${o.bytesPerToken}` : 'byte'} sizing) -> ${o.out} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}

await main();
