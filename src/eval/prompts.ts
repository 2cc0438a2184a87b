/**
 * The token ids `eval ruler` feeds the engine for one sample, and the JSONL that hands the same
 * samples to other libraries (tools/kvpress/run_presses.py runs NVIDIA's kvpress on them).
 *
 *   query-aware:    input    = encode(context + question + answerPrefix, special tokens)   one prompt
 *   query-agnostic: context  = encode(context, special tokens)          prefilled and compressed first,
 *                   question = encode(question + answerPrefix, none)    then appended, no second eviction
 *
 * The runner takes its ids from here, so a written line holds exactly what the engine was fed.
 */
import { generateSample } from './ruler/index.ts';
import type { Sample, TaskName, TextTokenizer } from './ruler/types.ts';
import type { EvalMode } from './runner.ts';

/** What the runner needs of a tokenizer: encode with or without the special tokens (BOS). */
export interface PromptTokenizer {
  encode(text: string, opts: { addSpecialTokens: boolean }): number[];
}

/** A tokenizer that also says which tokens end a generation (the Engine's tokenizer does). */
export interface RecordTokenizer extends PromptTokenizer {
  readonly eosTokenIds: readonly number[];
}

export interface PromptIds {
  /** The query-aware prompt: the whole input, special tokens added. */
  input: number[];
  /** Query-agnostic, first turn: the context alone, special tokens added. */
  context: number[];
  /** Query-agnostic, second turn: question and answer prefix, no special tokens. */
  question: number[];
}

/** The ids of one sample in each mode, as the runner sends them to the engine. */
export function promptIds(tokenizer: PromptTokenizer, sample: Sample): PromptIds {
  return {
    input: tokenizer.encode(sample.input, { addSpecialTokens: true }),
    context: tokenizer.encode(sample.context, { addSpecialTokens: true }),
    question: tokenizer.encode(sample.question + sample.answerPrefix, { addSpecialTokens: false }),
  };
}

/** The sample generators count tokens without special tokens, as RULER's `text_to_tokens`. */
export function sizingTokenizer(tokenizer: PromptTokenizer): TextTokenizer {
  return { encode: (t: string) => tokenizer.encode(t, { addSpecialTokens: false }) };
}

/** One line of the prompts JSONL (snake_case: it is read by Python). */
export interface PromptRecord {
  task: TaskName;
  length: number;
  index: number;
  seed: number;
  /** The mode `eval ruler` runs with the same flags; every line carries the ids of both modes. */
  mode: EvalMode;
  /** basename of the model path: the `<model>` part of the runner's run directories. */
  model: string;
  model_path: string;
  /** modelFingerprint() of the checkpoint, as the runner records it in metrics.json. */
  model_fingerprint: string;
  depth: number | null;
  context: string;
  question: string;
  answer_prefix: string;
  /** context + question + answer_prefix. */
  input: string;
  references: string[];
  /** What the runner asks the engine to generate at most (RULER's tokens_to_generate). */
  max_new_tokens: number;
  /** Tokens that end our engine's generation (the tokenizer's end-of-sequence ids). */
  eos_token_ids: number[];
  input_ids: number[];
  context_ids: number[];
  question_ids: number[];
  /** encode(answer_prefix) without special tokens. */
  answer_prefix_ids: number[];
  /**
   * Tokens of input_ids before the answer prefix when input_ids ends with answer_prefix_ids
   * (context + question, as kvpress's query-aware mode compresses them), else null.
   */
  question_end: number | null;
}

export interface PromptPlan {
  tasks: TaskName[];
  lengths: number[];
  samples: number;
  seed: number;
  mode: EvalMode;
}

export interface ModelInfo {
  path: string;
  name: string;
  fingerprint: string;
}

/** One sample's line: the generator call of the runner, then its ids. */
export function promptRecord(tokenizer: RecordTokenizer, model: ModelInfo, task: TaskName, length: number, seed: number, index: number, mode: EvalMode): PromptRecord {
  const sample = generateSample(task, { length, seed, index, tokenizer: sizingTokenizer(tokenizer) });
  const ids = promptIds(tokenizer, sample);
  const answerPrefixIds = tokenizer.encode(sample.answerPrefix, { addSpecialTokens: false });
  const cut = ids.input.length - answerPrefixIds.length;
  const splits = answerPrefixIds.length > 0 && cut > 0 && answerPrefixIds.every((t, i) => ids.input[cut + i] === t);
  return {
    task, length, index, seed, mode,
    model: model.name, model_path: model.path, model_fingerprint: model.fingerprint,
    depth: sample.depth ?? null,
    context: sample.context, question: sample.question, answer_prefix: sample.answerPrefix, input: sample.input,
    references: sample.references, max_new_tokens: sample.maxNewTokens, eos_token_ids: [...tokenizer.eosTokenIds],
    input_ids: ids.input, context_ids: ids.context, question_ids: ids.question,
    answer_prefix_ids: answerPrefixIds, question_end: splits ? cut : null,
  };
}

/** Every line of the JSONL, in the runner's order: task, length, then sample index. */
export function* promptRecords(tokenizer: RecordTokenizer, model: ModelInfo, plan: PromptPlan): Generator<PromptRecord> {
  for (const task of plan.tasks) {
    for (const length of plan.lengths) {
      for (let i = 0; i < plan.samples; i++) yield promptRecord(tokenizer, model, task, length, plan.seed, i, plan.mode);
    }
  }
}
