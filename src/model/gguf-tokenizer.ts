/**
 * GGUF `tokenizer.ggml.*` metadata -> a tokenizer.json object that @huggingface/tokenizers loads
 * (no tokenizer of our own). Two vocabulary models, as llama.cpp reads them:
 * - `gpt2` (byte-level BPE: Llama 3, Qwen2, SmolLM, ...): vocab + merges; the pre-tokenizer is the
 *   list of split regexes llama.cpp applies for `tokenizer.ggml.pre` (llama-vocab.cpp), each as an
 *   isolating Split, then ByteLevel without its own regex.
 * - `llama` (SentencePiece BPE: Llama 1/2, Mistral): vocab with scores and byte-fallback tokens;
 *   merges derived from the scores the way transformers' GGUF converter derives them.
 * Control and user-defined tokens become added tokens (control ones special), so chat markers in
 * a prompt are matched whole, as llama.cpp does when it parses special tokens.
 */
import { GgufError } from '../errors.ts';
import type { GgufMeta } from './gguf-config.ts';

const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_USER_DEFINED = 4;

const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const LLAMA3 = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2 = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const TEKKEN = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

interface PreTokenizer {
  /** Split regexes, applied in order (llama-vocab.cpp's regex_exprs). */
  regexes: string[];
  /** llama.cpp's clean_spaces: decoding removes the space before punctuation and contractions. */
  cleanSpaces: boolean;
  /** Whole-word vocabulary hits skip the merges (llama.cpp's ignore_merges). */
  ignoreMerges?: boolean;
  /** BOS when the file does not say (tokenizer.ggml.add_bos_token). */
  addBos?: boolean;
}

/** llama.cpp's pre-tokenizers by `tokenizer.ggml.pre`, with the flags it sets for each (llama-vocab.cpp). */
const PRE: Record<string, PreTokenizer> = {
  default: { regexes: ['[\\p{P}\\$\\+<=>\\^~\\|]+', GPT2, '\\p{N}+', '[0-9][0-9][0-9]'], cleanSpaces: true },
  llama3: { regexes: [LLAMA3], cleanSpaces: true, ignoreMerges: true, addBos: true },
  dbrx: { regexes: [LLAMA3], cleanSpaces: true },
  qwen2: { regexes: [QWEN2], cleanSpaces: false },
  stablelm2: { regexes: [QWEN2], cleanSpaces: true },
  smollm: { regexes: ['\\p{N}', GPT2], cleanSpaces: false },
  starcoder: { regexes: ['\\p{N}', GPT2], cleanSpaces: true },
  gpt2: { regexes: [GPT2], cleanSpaces: true },
  falcon: { regexes: ['[\\p{P}\\$\\+<=>\\^~\\|`]+', GPT2, '[0-9][0-9][0-9]'], cleanSpaces: true },
  tekken: { regexes: [TEKKEN], cleanSpaces: false, ignoreMerges: true, addBos: true },
};
const PRE_ALIASES: Record<string, string> = {
  'llama-bpe': 'llama3', 'llama-v3': 'llama3', falcon3: 'llama3', 'falcon-h1': 'llama3', pixtral: 'llama3', 'midm-2.0': 'llama3', lfm2: 'llama3',
  'smaug-bpe': 'dbrx',
  'deepseek-r1-qwen': 'qwen2', kormo: 'qwen2',
  megrez: 'stablelm2',
  'command-r': 'smollm',
  refact: 'starcoder', codeshell: 'starcoder', exaone: 'starcoder', 'minerva-7b': 'starcoder',
  'gpt-2': 'gpt2', 'phi-2': 'gpt2', mpt: 'gpt2', olmo: 'gpt2', jais: 'gpt2', exaone4: 'gpt2', 'a.x-4.0': 'gpt2', mellum: 'gpt2',
  'jina-es': 'gpt2', 'jina-de': 'gpt2', 'jina-v2-es': 'gpt2', 'jina-v2-de': 'gpt2', gigachat: 'gpt2',
};

type Json = Record<string, unknown>;

export interface GgufTokenizerParts {
  tokenizerJson: Json;
  /** What tokenizer_config.json would hold: special tokens and add_bos_token. */
  tokenizerConfig: Json;
  chatTemplate: string | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

export function tokenizerFromGguf(meta: GgufMeta, eosTokenIds: number[]): GgufTokenizerParts {
  const model = meta.string('tokenizer.ggml.model', null);
  if (model === null) throw new GgufError(`${meta.where} has no tokenizer (tokenizer.ggml.model is missing); it cannot be run from text`);
  const tokens = meta.strings('tokenizer.ggml.tokens', true)!;
  const types = meta.numbers('tokenizer.ggml.token_type');
  if (types && types.length !== tokens.length) {
    throw new GgufError(`${meta.where}: tokenizer.ggml.token_type has ${types.length} entries for ${tokens.length} tokens`);
  }
  const idAt = (key: string): number | null => {
    const id = meta.int(key, null);
    if (id !== null && (id < 0 || id >= tokens.length)) throw new GgufError(`${meta.where}: ${key} ${id} is outside the ${tokens.length}-token vocabulary`);
    return id;
  };
  // SentencePiece files may leave these out; llama.cpp then takes <unk> 0, <s> 1, </s> 2.
  const spmDefault = (id: number): number | null => (model === 'llama' && id < tokens.length ? id : null);
  const bos = idAt('tokenizer.ggml.bos_token_id') ?? spmDefault(1);
  const eos = idAt('tokenizer.ggml.eos_token_id') ?? spmDefault(2);
  const unk = idAt('tokenizer.ggml.unknown_token_id') ?? spmDefault(0);
  const pad = idAt('tokenizer.ggml.padding_token_id');
  for (const id of eosTokenIds) if (id < 0 || id >= tokens.length) throw new GgufError(`${meta.where}: end-of-generation token ${id} is outside the vocabulary`);

  const addedTokens: Json[] = [];
  for (let id = 0; id < tokens.length; id++) {
    const t = types?.[id] ?? 1;
    const special = t === TOKEN_CONTROL || t === TOKEN_UNKNOWN;
    if (!special && t !== TOKEN_USER_DEFINED) continue;
    addedTokens.push({ id, content: tokens[id], single_word: false, lstrip: false, rstrip: false, normalized: !special && model === 'llama', special });
  }

  let modelJson: Json;
  let preTokenizer: Json | null = null;
  let normalizer: Json | null = null;
  let decoder: Json;
  let addBosDefault: boolean;
  let cleanSpaces: boolean;
  if (model === 'gpt2') {
    const merges = meta.strings('tokenizer.ggml.merges', true)!;
    const preName = meta.string('tokenizer.ggml.pre', 'default') ?? 'default';
    const pre = PRE[PRE_ALIASES[preName] ?? preName];
    if (!pre) {
      const known = [...Object.keys(PRE), ...Object.keys(PRE_ALIASES)].sort().join(', ');
      throw new GgufError(`${meta.where}: pre-tokenizer "${preName}" (tokenizer.ggml.pre) is not supported; supported: ${known}`);
    }
    const regexes = pre.regexes;
    cleanSpaces = pre.cleanSpaces;
    modelJson = {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: pre.ignoreMerges ?? false, vocab: vocabObject(tokens), merges,
    };
    preTokenizer = {
      type: 'Sequence',
      pretokenizers: [
        ...regexes.map((r) => ({ type: 'Split', pattern: { Regex: r }, behavior: 'Isolated', invert: false })),
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    };
    decoder = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
    addBosDefault = pre.addBos ?? false;
  } else if (model === 'llama') {
    const scores = meta.numbers('tokenizer.ggml.scores');
    if (!scores || scores.length !== tokens.length) throw new GgufError(`${meta.where}: a SentencePiece (llama) vocabulary needs tokenizer.ggml.scores, one per token`);
    modelJson = {
      type: 'BPE', dropout: null, unk_token: unk !== null ? tokens[unk] : null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab: vocabObject(tokens), merges: mergesFromScores(tokens, scores),
    };
    const prefix = meta.bool('tokenizer.ggml.add_space_prefix', true);
    normalizer = {
      type: 'Sequence',
      normalizers: [...(prefix ? [{ type: 'Prepend', prepend: '\u2581' }] : []), { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }],
    };
    decoder = {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    };
    addBosDefault = true;
    cleanSpaces = false;
  } else {
    throw new GgufError(`${meta.where}: tokenizer model "${model}" (tokenizer.ggml.model) is not supported; supported: gpt2 (byte-level BPE), llama (SentencePiece)`);
  }

  const addBos = meta.bool('tokenizer.ggml.add_bos_token', addBosDefault) ?? addBosDefault;
  const text = (id: number | null): string | null => (id === null ? null : tokens[id]!);
  const tokenizerConfig: Json = {
    add_bos_token: addBos && bos !== null,
    add_eos_token: false,
    clean_up_tokenization_spaces: cleanSpaces,
    bos_token: text(bos),
    eos_token: text(eos),
    unk_token: text(unk),
    pad_token: text(pad),
  };
  const tokenizerJson: Json = {
    version: '1.0', truncation: null, padding: null, added_tokens: addedTokens, normalizer, pre_tokenizer: preTokenizer,
    post_processor: null, decoder, model: modelJson,
  };
  return {
    tokenizerJson,
    tokenizerConfig,
    chatTemplate: meta.string('tokenizer.chat_template', null),
    bosTokenId: bos,
    eosTokenIds: eosTokenIds.length > 0 ? eosTokenIds : eos !== null ? [eos] : [],
  };
}

/** token -> id; a token listed twice keeps its first id (llama.cpp refuses such files at load). */
function vocabObject(tokens: string[]): Record<string, number> {
  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  for (let i = 0; i < tokens.length; i++) if (!(tokens[i]! in vocab)) vocab[tokens[i]!] = i;
  return vocab;
}

/**
 * SentencePiece BPE merges from scores (as transformers' GGUF converter builds them): every split
 * of a token into two vocabulary pieces is a merge ranked by the token's score; ties keep the
 * order of the pieces' scores, higher first.
 */
function mergesFromScores(tokens: string[], scores: number[]): [string, string][] {
  const score = new Map<string, number>();
  for (let i = 0; i < tokens.length; i++) if (!score.has(tokens[i]!)) score.set(tokens[i]!, scores[i]!);
  const merges: { l: string; r: string; s: number }[] = [];
  for (const [piece, s] of score) {
    const chars = [...piece];
    const local: { l: string; r: string; s: number }[] = [];
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join('');
      const r = chars.slice(k).join('');
      if (score.has(l) && score.has(r)) local.push({ l, r, s });
    }
    local.sort((a, b) => score.get(b.l)! - score.get(a.l)! || score.get(b.r)! - score.get(a.r)!);
    merges.push(...local);
  }
  merges.sort((a, b) => b.s - a.s); // stable: equal scores keep their order
  return merges.map((m) => [m.l, m.r]);
}
