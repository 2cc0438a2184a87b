/**
 * tokenizer.json (via @huggingface/tokenizers) plus tokenizer_config.json's chat template (via
 * @huggingface/jinja). Special-token ids come from the tokenizer files, with config.json and
 * generation_config.json adding end-of-sequence ids the way transformers' generate() does.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { GgufError, ModelLoadError, UsageError } from '../errors.ts';
import type { GgufMeta } from './gguf-config.ts';
import { tokenizerFromGguf } from './gguf-tokenizer.ts';

export interface ChatMessage {
  role: string;
  content: string;
}

type Json = Record<string, unknown>;

function readJson(file: string, required: boolean): Json | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new ModelLoadError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Json;
  } catch (e) {
    throw new ModelLoadError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/** tokenizer_config's special tokens are either a string or an AddedToken object. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}

function idList(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

export class Tokenizer {
  readonly bosTokenId: number | null;
  readonly eosTokenIds: number[];
  /** One past the largest token id (vocabulary plus added tokens). */
  readonly vocabSize: number;

  private constructor(
    private readonly hf: HfTokenizer,
    private readonly tokenizerConfig: Json,
    private readonly chatTemplate: string | null,
    private readonly dir: string,
    bosTokenId: number | null,
    eosTokenIds: number[],
    private readonly specialIds: Set<number>,
  ) {
    this.bosTokenId = bosTokenId;
    this.eosTokenIds = eosTokenIds;
    let maxId = -1;
    for (const id of hf.get_vocab(true).values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;
  }

  static async load(dir: string): Promise<Tokenizer> {
    const tokenizerJson = readJson(path.join(dir, 'tokenizer.json'), true) as Json;
    const tokenizerConfig = readJson(path.join(dir, 'tokenizer_config.json'), false) ?? {};
    const config = readJson(path.join(dir, 'config.json'), false) ?? {};
    const generationConfig = readJson(path.join(dir, 'generation_config.json'), false) ?? {};
    let hf: HfTokenizer;
    try {
      hf = new HfTokenizer(tokenizerJson, tokenizerConfig);
    } catch (e) {
      throw new ModelLoadError(`${dir}/tokenizer.json could not be loaded: ${(e as Error).message}`);
    }

    const idOf = (tok: string | null): number | null => (tok === null ? null : hf.token_to_id(tok) ?? null);
    let bos = idOf(tokenContent(tokenizerConfig.bos_token));
    if (bos === null && typeof config.bos_token_id === 'number') bos = config.bos_token_id;
    const eos = new Set<number>();
    const eosFromTokenizer = idOf(tokenContent(tokenizerConfig.eos_token));
    if (eosFromTokenizer !== null) eos.add(eosFromTokenizer);
    for (const id of idList(config.eos_token_id)) eos.add(id);
    for (const id of idList(generationConfig.eos_token_id)) eos.add(id);

    const specialIds = new Set<number>();
    for (const [id, tok] of hf.get_added_tokens_decoder()) if (tok.special) specialIds.add(id);

    return new Tokenizer(hf, tokenizerConfig, findChatTemplate(dir, tokenizerConfig), dir, bos, [...eos], specialIds);
  }

  /** The tokenizer a GGUF file describes (tokenizer.ggml.*, tokenizer.chat_template). */
  static fromGguf(meta: GgufMeta, eosTokenIds: number[]): Tokenizer {
    const parts = tokenizerFromGguf(meta, eosTokenIds);
    let hf: HfTokenizer;
    try {
      hf = new HfTokenizer(parts.tokenizerJson, parts.tokenizerConfig);
    } catch (e) {
      throw new GgufError(`${meta.where}: its tokenizer could not be built: ${(e as Error).message}`);
    }
    const specialIds = new Set<number>();
    for (const [id, tok] of hf.get_added_tokens_decoder()) if (tok.special) specialIds.add(id);
    return new Tokenizer(hf, parts.tokenizerConfig, parts.chatTemplate, meta.where, parts.bosTokenId, parts.eosTokenIds, specialIds);
  }

  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    const addSpecial = opts.addSpecialTokens ?? true;
    const ids = this.hf.encode(text, { add_special_tokens: addSpecial }).ids.slice();
    // transformers rebuilds the post-processor from add_bos_token; tokenizer.json may disagree.
    const addBos = this.tokenizerConfig.add_bos_token;
    if (addSpecial && this.bosTokenId !== null) {
      if (addBos === true && ids[0] !== this.bosTokenId) ids.unshift(this.bosTokenId);
      if (addBos === false && ids[0] === this.bosTokenId && !text.startsWith(this.tokenText(this.bosTokenId))) ids.shift();
    }
    return ids;
  }

  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return ''; // the library rejects an empty list
    return this.hf.decode(ids, { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** The token's string form in the vocabulary (byte-level tokens show GPT-2's stand-in chars). */
  tokenText(id: number): string {
    return this.hf.id_to_token(id) ?? '';
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplate !== null;
  }

  applyChatTemplate(messages: ChatMessage[], opts: { addGenerationPrompt: boolean }): string {
    if (this.chatTemplate === null) {
      throw new UsageError(`the model ${this.dir} has no chat template (no chat_template in tokenizer_config.json or tokenizer.chat_template in the GGUF); run without --chat and pass a plain prompt`);
    }
    const special = (key: string): string => tokenContent(this.tokenizerConfig[key]) ?? '';
    try {
      return new Template(this.chatTemplate).render({
        messages,
        add_generation_prompt: opts.addGenerationPrompt,
        bos_token: special('bos_token'),
        eos_token: special('eos_token'),
        unk_token: special('unk_token'),
        pad_token: special('pad_token'),
      });
    } catch (e) {
      // Templates reject unsupported conversations (e.g. a system role) via raise_exception.
      throw new UsageError(`chat template of ${this.dir} failed on these messages: ${(e as Error).message}`);
    }
  }

  /** The token ids of a chat prompt: the template already places BOS, so none is added. */
  encodeChat(messages: ChatMessage[]): number[] {
    return this.encode(this.applyChatTemplate(messages, { addGenerationPrompt: true }), { addSpecialTokens: false });
  }
}

function findChatTemplate(dir: string, tokenizerConfig: Json): string | null {
  const t = tokenizerConfig.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    // Named templates: [{name, template}]; 'default' is the one transformers uses.
    const named = t as { name?: unknown; template?: unknown }[];
    const pick = named.find((x) => x.name === 'default') ?? named[0];
    if (pick && typeof pick.template === 'string') return pick.template;
  }
  // Newer checkpoints store the template in its own file.
  const file = path.join(dir, 'chat_template.jinja');
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8');
  return null;
}

/**
 * Incremental detokenizer: byte-level tokens may end mid-character, so text is released only once
 * it decodes without a trailing U+FFFD. Decoding a short window of previous tokens along with the
 * new ones keeps context-dependent decoders (leading-space stripping) right.
 */
export class StreamDecoder {
  private ids: number[] = [];
  /** Start of the window decoded for context. */
  private prefixOffset = 0;
  /** End of the tokens whose text was already emitted. */
  private readOffset = 0;

  constructor(
    private readonly tokenizer: Pick<Tokenizer, 'decode'>,
    private readonly opts: { skipSpecialTokens?: boolean } = {},
  ) {}

  push(id: number): string {
    this.ids.push(id);
    const done = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset), this.opts);
    const all = this.tokenizer.decode(this.ids.slice(this.prefixOffset), this.opts);
    if (all.length > done.length && !all.endsWith('\uFFFD')) {
      const text = all.slice(done.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      this.compact();
      return text;
    }
    return '';
  }

  /** Whatever is still held back (incomplete characters come out as U+FFFD). */
  flush(): string {
    const done = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset), this.opts);
    const all = this.tokenizer.decode(this.ids.slice(this.prefixOffset), this.opts);
    this.prefixOffset = this.readOffset = this.ids.length;
    this.compact();
    return all.length > done.length ? all.slice(done.length) : '';
  }

  /** Drops ids before the context window so a long stream does not grow without bound. */
  private compact(): void {
    if (this.prefixOffset > 0) {
      this.ids = this.ids.slice(this.prefixOffset);
      this.readOffset -= this.prefixOffset;
      this.prefixOffset = 0;
    }
  }
}
