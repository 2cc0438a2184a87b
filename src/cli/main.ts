import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { RocketError, UsageError } from '../errors.ts';
import { runCommand } from './run.ts';
import { methodsCommand } from './methods.ts';
import { evalRulerCommand, evalNiahCommand, evalSampleCommand, evalReportCommand } from './eval.ts';
import { evalPromptsCommand } from './eval-prompts.ts';
import { inspectCommand } from './inspect.ts';
import { exportGgufCommand } from './export-gguf.ts';
import { benchKernelsCommand, benchDecodeCommand, benchModelCommand, benchServeCommand, benchHttpCommand } from './bench.ts';
import { duoHeadsCommand } from './duo-heads.ts';
import { pullCommand } from './pull.ts';
import { serveCommand } from './serve.ts';

export function intArg(name: string, min = 0): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

export function floatArg(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`);
    return n;
  };
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The engine and KV flags of run and serve (the model option comes first, in each command). */
function engineOptions(c: Command, kvMethodHelp: string): Command {
  return c
    .option('--threads <n>', 'kernel threads (default: all cores)', intArg('threads', 1))
    .option('--weights <fmt>', 'in-memory weights: f32 or q8 (default q8 above 300M parameters)')
    .option('--ctx <n>', 'most tokens a sequence may hold (default: the model\'s context)', intArg('ctx', 1))
    .option('--kv-memory <bytes>', 'KV pool limit, e.g. 600MB (default: 90% of what wasm32 leaves after the weights)')
    .option('--kv-method <name>', kvMethodHelp, 'full')
    .option('--kv-budget <n>', 'KV budget in tokens (its meaning per method: see `rocketkv methods`)')
    .option('--kv-opt <key=value>', 'method option, repeatable', collect, [] as string[]);
}

export function buildProgram(): Command {
  const program = new Command('rocketkv')
    .description('Long-context LLM inference on WebAssembly SIMD kernels with a compressed, paged KV cache')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  const run = program
    .command('run')
    .description('generate text from a prompt (argument, --file, or stdin), streaming tokens to stdout')
    .argument('[prompt]', 'prompt text; omit to use --file or stdin')
    .option('-m, --model <dir>', 'GGUF file, Hugging Face model directory, or a pulled repo id ORG/NAME[:FILE] (default: the bundled model)')
    .option('-f, --file <path>', 'read the prompt from a file')
    .option('--chat', 'wrap the prompt in the model\'s chat template as a user message')
    .option('-n, --max-tokens <n>', 'tokens to generate at most', intArg('max-tokens'), 128)
    .option('--temperature <t>', 'sampling temperature; 0 is greedy', floatArg('temperature'), 0)
    .option('--top-k <k>', 'sample from the k most likely tokens (0 = all)', intArg('top-k'), 0)
    .option('--top-p <p>', 'nucleus sampling threshold in (0, 1]', floatArg('top-p'), 1)
    .option('--seed <n>', 'sampler seed', intArg('seed'), 0)
    .option('--stop <s>', 'stop string, repeatable', collect, [] as string[]);
  engineOptions(run, 'KV compression method (see `rocketkv methods`)').action(runCommand);

  const serve = program
    .command('serve')
    .description('an OpenAI-compatible HTTP server (chat and completions, streaming), with /health, /metrics and a chat page at /')
    .option('-m, --model <dir>', 'GGUF file, Hugging Face model directory, or a pulled repo id ORG/NAME[:FILE] (default: the bundled model)')
    .option('--served-model-name <name>', 'the model id in the API (default: the repo id or file name)')
    .option('--host <addr>', 'address to listen on (loopback by default; 0.0.0.0 for every interface)', '127.0.0.1')
    .option('--port <n>', 'port', intArg('port', 0), 8080)
    .option('--api-key <key>', 'require "Authorization: Bearer <key>" on /v1 routes (default: ROCKETKV_API_KEY, else none)');
  engineOptions(serve, 'KV compression method of requests without a kv field (see `rocketkv methods`)')
    .option('--max-queued <n>', 'requests queued or running at most; more get 429', intArg('max-queued', 1), 256)
    .option('--max-tokens <n>', 'max_tokens of requests that give none (default: up to the context; lowered to what fits the KV limit)', intArg('max-tokens', 1))
    .option('--body-limit <bytes>', 'largest request body; larger ones get 413', '4MB')
    .option('--max-sessions <n>', 'multi-turn caches kept for the X-Session-Id header (0: none); idle ones give their blocks back when requests wait', intArg('max-sessions', 0), 64)
    .option('--session-idle <s>', 'seconds an idle session\'s cache is kept', floatArg('session-idle'), 600)
    .option('--shutdown-grace <s>', 'on SIGTERM/SIGINT, seconds requests in flight get to finish before they are cancelled', floatArg('shutdown-grace'), 30)
    .action(serveCommand);

  program
    .command('methods')
    .description('list the KV compression methods, one line each, with their defaults')
    .action(methodsCommand);

  program
    .command('inspect')
    .description('show a model\'s architecture, parameters and memory estimate')
    .option('-m, --model <dir>', 'GGUF file, Hugging Face model directory, or a pulled repo id ORG/NAME[:FILE] (default: the bundled model)')
    .option('--weights <fmt>', 'weights format to estimate for: f32 or q8')
    .action(inspectCommand);

  program
    .command('export-gguf')
    .description('write a model as an f32/f16 GGUF that llama.cpp loads; from a quantized GGUF, dequantized, so llama.cpp and rocketkv compute on the same weights without quantization error')
    .requiredOption('-m, --model <dir>', 'GGUF file, Hugging Face model directory, or a pulled repo id ORG/NAME[:FILE]')
    .requiredOption('-o, --out <file>', 'output .gguf path')
    .option('--dtype <t>', 'tensor type: f32 or f16 (f32 keeps a quantized GGUF\'s dequantized values exactly)', 'f32')
    .action(exportGgufCommand);

  program
    .command('duo-heads')
    .description("score every KV head for the duo method (retrieval vs streaming) and store the pattern beside the model")
    .option('-m, --model <dir>', 'GGUF file, Hugging Face model directory, or a pulled repo id ORG/NAME[:FILE] (default: the bundled model)')
    .option('-o, --out <file>', 'where to write the pattern (default: beside the model: FILE.gguf.duo-heads.json or DIR/duo-heads.json)')
    .option('--texts <n>', 'texts of the scoring pass (1024 tokens each)', '16')
    .option('--threads <n>', 'kernel threads (default: all cores)', intArg('threads', 1))
    .option('--weights <fmt>', 'in-memory weights: f32 or q8')
    .action(duoHeadsCommand);

  program
    .command('pull')
    .description('download a model from the Hugging Face hub into its cache; prints the path to pass to --model')
    .argument('<repo>', 'ORG/NAME (a .gguf or a safetensors model directory), or ORG/NAME:FILE')
    .option('--revision <rev>', 'branch, tag or commit', 'main')
    .action(pullCommand);

  const evalCmd = program.command('eval').description('accuracy on RULER-style tasks, full cache vs compressed');
  const evalOptions = (c: Command): Command =>
    c
      .option('-m, --model <dir>', 'GGUF file, Hugging Face model directory, or a pulled repo id ORG/NAME[:FILE] (default: the bundled model)')
      .option('--lengths <list>', 'context lengths in tokens, comma-separated', '1024')
      .option('--methods <list>', 'KV methods, comma-separated; name:key=value[:key=value] is a variant with its own options (e.g. kvcompress:pooling=max)', 'full')
      .option('--budgets <list>', 'KV budgets for every method but full, comma-separated', '')
      .option('--samples <n>', 'samples per cell', intArg('samples', 1), 20)
      .option('--seed <n>', 'seed of the task generators', intArg('seed', 0), 0)
      .option('-o, --out <dir>', 'output directory (finished runs in it are skipped)', 'results')
      .option('--query-agnostic', 'compress the context before the question is appended')
      .option('--multi-turn', 'ask several questions of one context on one cache (niah tasks; see --turns)')
      .option('--turns <n>', 'questions per context with --multi-turn', intArg('turns', 2), 3)
      .option('--kv-opt <key=value>', 'method option for every compressed method, repeatable', collect, [] as string[])
      .option('--threads <n>', 'kernel threads (default: all cores)', intArg('threads', 1))
      .option('--weights <fmt>', 'in-memory weights: f32 or q8');
  evalOptions(evalCmd.command('ruler').description('score every task x length x method x budget; writes per-run artifacts, summary.md and SVG plots'))
    .option('--tasks <list>', 'task families, comma-separated', 'niah_single_1')
    .action(evalRulerCommand);
  evalOptions(evalCmd.command('niah').description('needle depth x context length heatmap per method and budget'))
    .option('--tasks <name>', 'one NIAH task', 'niah_single_1')
    .option('--depths <list>', 'needle depths in percent, comma-separated', '0,10,20,30,40,50,60,70,80,90,100')
    .action(evalNiahCommand);
  evalCmd
    .command('report')
    .description('one results page (markdown + SVG plots beside it) from the runs in one or more eval output directories')
    .argument('<dirs...>', 'eval output directories (--out of earlier eval runs)')
    .option('-o, --out <file>', 'markdown page to write', 'docs/results.md')
    .option('--title <text>', 'page title', 'Accuracy of KV-cache compression on RULER-style tasks')
    .option('--intro <text>', 'paragraph under the title (how the runs were made)', '')
    .action(evalReportCommand);
  evalCmd
    .command('sample')
    .description("print one task prompt, sized in the model's tokens, on stdout (its answer on stderr); pipe it into `run`")
    .option('-m, --model <dir>', 'GGUF file, Hugging Face model directory, or a pulled repo id ORG/NAME[:FILE] (default: the bundled model)')
    .option('--task <name>', 'task family', 'niah_single_2')
    .option('--length <n>', 'prompt + answer length in tokens', intArg('length', 1), 4096)
    .option('--seed <n>', 'seed of the task generators', intArg('seed', 0), 0)
    .option('--index <n>', 'sample index', intArg('index', 0), 0)
    .option('--depth <percent>', 'needle depth 0..100 (niah tasks; default random)', floatArg('depth'))
    .action(evalSampleCommand);

  evalCmd
    .command('prompts')
    .description("write the samples `eval ruler` runs, with the token ids fed to the engine in each mode, as JSONL (for tools/kvpress/run_presses.py)")
    .option('-m, --model <dir>', 'GGUF file, Hugging Face model directory, or a pulled repo id ORG/NAME[:FILE] (default: the bundled model)')
    .option('--tasks <list>', 'task families, comma-separated', 'niah_single_1')
    .option('--lengths <list>', 'context lengths in tokens, comma-separated', '1024')
    .option('--samples <n>', 'samples per task and length', intArg('samples', 1), 20)
    .option('--seed <n>', 'seed of the task generators', intArg('seed', 0), 0)
    .option('--query-agnostic', "label the lines with eval ruler's query-agnostic mode (every line holds the ids of both modes)")
    .option('-o, --out <file>', 'JSONL file to write')
    .action(evalPromptsCommand);

  const bench = program.command('bench').description('benchmarks that print figures and ratios');
  bench
    .command('kernels')
    .description('GEMM GFLOP/s, matrix-vector bandwidth vs a SIMD sum, int8 vs f32 matrix-vector')
    .option('--threads <n>', 'threads (default: all cores)', intArg('threads', 1))
    .action(benchKernelsCommand);
  bench
    .command('decode')
    .description('decode tokens/s of a random-weight model with real shapes (or a real model), beside its bandwidth roofline')
    .option('-m, --model <dir>', 'real weights from a GGUF file, Hugging Face model directory or pulled repo id (default: random weights of --shape)')
    .option('--shape <name>', 'model shape of the random weights: qwen2.5-0.5b', 'qwen2.5-0.5b')
    .option('--context <n>', 'tokens in the KV cache', intArg('context', 1), 1024)
    .option('--steps <n>', 'decode steps to time', intArg('steps', 1), 32)
    .option('--weights <fmt>', 'f32 or q8', 'q8')
    .option('--threads <n>', 'threads (default: all cores)', intArg('threads', 1))
    .option('--methods <list>', 'KV methods timed on the same cache, comma-separated; the first sets the roofline', 'full')
    .option('--kv-budget <n>', 'KV budget for every method but full')
    .option('--kv-opt <key=value>', 'method option for every method but full, repeatable', collect, [] as string[])
    .option('--batch <n>', 'also time one step of n sequences (full caches) against one sequence alone', intArg('batch', 2))
    .option('--reference-context <n>', 'time each method\'s steps alternately with a full-KV cache of n tokens and print its step over that one', intArg('reference-context', 1))
    .action(benchDecodeCommand);
  bench
    .command('model')
    .description('prefill and decode tokens/s of a real model, ours beside llama.cpp on the same GGUF, token ids and threads; ratios of medians')
    .option('-m, --model <dir>', 'GGUF file, Hugging Face model directory, or a pulled repo id ORG/NAME[:FILE] (default: the bundled model)')
    .option('--prompt-tokens <list>', 'prompt length in tokens, or several separated by commas (e.g. 1024,4096,16384): each in turn, both sides loaded once', '512')
    .option('--gen-tokens <n>', 'greedy tokens to generate (end-of-sequence ignored)', intArg('gen-tokens', 2), 64)
    .option('--rounds <n>', 'rounds, each running both sides in alternating order', intArg('rounds', 1), 3)
    .option('--threads <n>', 'threads on both sides (default: all cores)', intArg('threads', 1))
    .option('--weights <fmt>', 'our in-memory weights: f32 or q8 (default q8 above 300M parameters)')
    .option('--peer <name>', 'llama.cpp (node-llama-cpp, else @fugood/llama.node) or none', 'llama.cpp')
    .option('--kv-method <name>', 'our KV compression method (the peer keeps the full cache)', 'full')
    .option('--kv-budget <n>', 'KV budget in tokens for --kv-method')
    .option('--kv-opt <key=value>', 'method option, repeatable', collect, [] as string[])
    .option('--beside <method@budget>', 'a second method of ours decoded from the same prefill each round, e.g. rocketkv@256')
    .option('--json <file>', 'also write the figures as JSON (an array when several lengths)')
    .action(benchModelCommand);
  /** The options bench serve and bench http share: model, KV limit, sizes, methods, rounds, threads. */
  const loadBenchOptions = (c: Command, d: { kvMemory: string; promptTokens: number; methods: string; promptHelp: string }): Command =>
    c
      .option('-m, --model <dir>', 'GGUF file, Hugging Face model directory, or a pulled repo id ORG/NAME[:FILE] (default: the bundled model)')
      .option('--kv-memory <bytes>', 'the KV pool limit every method runs under, e.g. 600MB', d.kvMemory)
      .option('--prompt-tokens <n>', d.promptHelp, intArg('prompt-tokens', 1), d.promptTokens)
      .option('--new-tokens <n>', 'tokens generated per request (end-of-sequence ignored)', intArg('new-tokens', 1), 32)
      .option('--methods <list>', 'METHOD or METHOD@BUDGET or METHOD@RATEx (budget = prompt tokens / RATE), comma-separated; the first is the baseline', d.methods)
      .option('--rounds <n>', 'rounds, alternating the order of the methods', intArg('rounds', 1), 1)
      .option('--threads <n>', 'kernel threads (default: all cores)', intArg('threads', 1))
      .option('--weights <fmt>', 'in-memory weights: f32 or q8 (default q8 above 300M parameters)')
      .option('--json <file>', 'also write the figures as JSON');
  loadBenchOptions(
    bench.command('serve').description('total decode tokens/s of N requests at once under one KV memory limit, per method, over the first (full)'),
    { kvMemory: '256MB', promptTokens: 6000, methods: 'full,kvcompress@8x,kvcompress@64x,rocketkv@256', promptHelp: 'prompt tokens per request' },
  )
    .option('--requests <n>', 'requests submitted at once', intArg('requests', 1), 32)
    .option('--synthetic', 'fill prompt caches with random K/V instead of running the prompts (decode speed and memory as in a real run; tokens meaningless)')
    .action(benchServeCommand);
  loadBenchOptions(
    bench.command('http').description('the HTTP server end to end: N streaming clients at once under one KV limit, per method; total tokens/s and p50/p99 time to first token'),
    { kvMemory: '16MB', promptTokens: 1024, methods: 'full,rocketkv@128,kvcompress@8x', promptHelp: 'prompt tokens per request (real prefill)' },
  )
    .option('--clients <n>', 'streaming clients at once', intArg('clients', 1), 16)
    .action(benchHttpCommand);

  return program;
}

/** Runs the CLI; returns the exit code. Errors a user can act on print one line, never a stack. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander has printed its own message (or help/version, which exit 0).
      return e.exitCode;
    }
    if (e instanceof RocketError) {
      process.stderr.write(`rocketkv: ${e.message}\n`);
      return e instanceof UsageError ? 2 : 1;
    }
    const err = e as NodeJS.ErrnoException;
    process.stderr.write(`rocketkv: internal error: ${err?.message ?? String(e)}${process.env.ROCKETKV_DEBUG ? `\n${err?.stack}` : ' (set ROCKETKV_DEBUG=1 for details)'}\n`);
    return 1;
  }
}
