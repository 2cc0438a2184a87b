/**
 * Request bodies of the OpenAI endpoints, validated field by field. Fields OpenAI defines that this
 * server does not implement are accepted only at their neutral value, so a client that sends
 * defaults works and one that asks for more gets a clear 400 instead of a silent difference.
 */
import { z } from 'zod';

const maxTokens = z.number().int().min(1, 'must be at least 1');

/** The `kv` extension: a compression method, its budget and its options (see `rocketkv methods`). */
export const KvField = z
  .object({ method: z.string().min(1), budget: z.number().optional() })
  .catchall(z.union([z.string(), z.number(), z.boolean()]));

const common = {
  model: z.string().min(1),
  max_tokens: maxTokens.nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  /** vLLM's extension; -1 or 0 keeps every token. */
  top_k: z.number().int().min(-1).nullish(),
  seed: z.number().int().nullish(),
  stop: z.union([z.string().min(1), z.array(z.string().min(1)).max(16)]).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.strictObject({ include_usage: z.boolean().optional(), continuous_usage_stats: z.literal(false).optional() }).nullish(),
  n: z.literal(1, { error: 'only n = 1 is supported' }).nullish(),
  /** vLLM's extension for benchmarks: keep generating past end-of-sequence tokens. */
  ignore_eos: z.boolean().nullish(),
  presence_penalty: z.literal(0, { error: 'presence_penalty is not supported; leave it at 0' }).nullish(),
  frequency_penalty: z.literal(0, { error: 'frequency_penalty is not supported; leave it at 0' }).nullish(),
  logprobs: z.literal(false, { error: 'logprobs are not supported' }).nullish(),
  user: z.string().nullish(),
  kv: KvField.nullish(),
};

const textPart = z.strictObject({ type: z.literal('text'), text: z.string() });

export const ChatMessage = z.strictObject({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.union([z.string(), z.array(textPart).min(1)]),
  name: z.string().optional(),
});

export const ChatRequest = z.strictObject({
  ...common,
  messages: z.array(ChatMessage).min(1, 'give at least one message'),
  max_completion_tokens: maxTokens.nullish(),
  top_logprobs: z.null().optional(),
  response_format: z.strictObject({ type: z.literal('text', { error: 'only the text response format is supported' }) }).nullish(),
});

export const CompletionRequest = z.strictObject({
  ...common,
  prompt: z.union([
    z.string().min(1, 'the prompt is empty'),
    z.array(z.string().min(1, 'the prompt is empty')).length(1, 'give one prompt (batches of prompts are not supported)'),
    z.array(z.number().int().min(0)).min(1, 'the prompt is empty'),
  ]),
  echo: z.literal(false, { error: 'echo is not supported' }).nullish(),
  suffix: z.null({ error: 'suffix is not supported' }).optional(),
  best_of: z.literal(1, { error: 'only best_of = 1 is supported' }).nullish(),
});

export type ChatBody = z.infer<typeof ChatRequest>;
export type CompletionBody = z.infer<typeof CompletionRequest>;

/** One line naming the first problem: the field's path and what is wrong with it. */
export function describeIssues(err: z.ZodError): { message: string; param: string | null } {
  let issue = err.issues[0]!;
  // A union (e.g. a prompt as text, [text] or token ids): the branch whose shape matched says what is wrong.
  while (issue.code === 'invalid_union') {
    const branch = issue.errors.find((b) => b.length > 0 && !b.some((i) => i.code === 'invalid_type' && i.path.length === 0));
    if (!branch) break;
    issue = { ...branch[0]!, path: [...issue.path, ...branch[0]!.path] } as typeof issue;
  }
  if (issue.code === 'unrecognized_keys') {
    const where = issue.path.length ? ` in ${issue.path.join('.')}` : '';
    return { message: `unrecognized request argument${issue.keys.length > 1 ? 's' : ''}${where}: ${issue.keys.join(', ')}`, param: [...issue.path, issue.keys[0]].join('.') };
  }
  const param = issue.path.length ? issue.path.join('.') : null;
  return { message: param ? `${param}: ${issue.message}` : issue.message, param };
}
