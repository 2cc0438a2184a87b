/**
 * Where a model comes from: a Hugging Face directory (config.json, safetensors, tokenizer.json) or
 * one GGUF file. Both give the same three things: a ModelConfig, a Tokenizer and a TensorSource
 * under Hugging Face tensor names, so the weight loader and the forward pass never know which.
 */
import * as fs from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelLoadError } from '../errors.ts';
import { parseConfig, type ModelConfig } from './config.ts';
import { openSafetensors, type TensorSource } from './safetensors.ts';
import { Tokenizer } from './tokenizer.ts';
import { GgufTensorSource, readGgufHeader, type GgufHeader } from './gguf-reader.ts';
import { configFromGguf, GgufMeta } from './gguf-config.ts';

export interface ModelSource {
  kind: 'hf' | 'gguf';
  path: string;
  config: ModelConfig;
  /** GGUF files only: the parsed header (metadata, tensor infos). */
  gguf?: GgufHeader;
  loadTokenizer(): Promise<Tokenizer>;
  openTensors(): Promise<TensorSource>;
}

/** Opens a model path: a GGUF file or a Hugging Face model directory. Reads headers only. */
export async function openModelSource(modelPath: string): Promise<ModelSource> {
  let st: fs.Stats;
  try {
    st = fs.statSync(modelPath);
  } catch {
    throw new ModelLoadError(`model ${modelPath} does not exist; pass --model a GGUF file, a Hugging Face model directory, or a repo id pulled with \`rocketkv pull\``);
  }
  if (st.isFile()) return openGguf(modelPath);
  if (!st.isDirectory()) throw new ModelLoadError(`${modelPath} is neither a file nor a directory`);
  const config = await readHfConfig(modelPath);
  return {
    kind: 'hf',
    path: modelPath,
    config,
    loadTokenizer: () => Tokenizer.load(modelPath),
    openTensors: () => openSafetensors(modelPath),
  };
}

function openGguf(filePath: string): ModelSource {
  const header = readGgufHeader(filePath);
  const readRaw = (name: string): Uint8Array => {
    const s = new GgufTensorSource(filePath, header);
    try {
      return s.readRaw(name);
    } finally {
      s.close();
    }
  };
  const config = configFromGguf(header, filePath, readRaw);
  const meta = new GgufMeta(header, filePath.split('/').pop() ?? filePath);
  return {
    kind: 'gguf',
    path: filePath,
    config,
    gguf: header,
    loadTokenizer: async () => Tokenizer.fromGguf(meta, config.eosTokenIds),
    openTensors: async () => new GgufTensorSource(filePath, header, config.architecture === 'llama'
      ? { ropePermute: { numHeads: config.numHeads, numKvHeads: config.numKvHeads, headDim: config.headDim } }
      : {}),
  };
}

/** Read and parse a directory's config.json, with errors that say what is missing. */
export async function readHfConfig(dir: string): Promise<ModelConfig> {
  let text: string;
  try {
    text = await readFile(join(dir, 'config.json'), 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ModelLoadError(`${dir} has no config.json; is it a Hugging Face model directory? (a GGUF model is one .gguf file: pass the file)`);
    throw new ModelLoadError(`cannot read ${join(dir, 'config.json')}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ModelLoadError(`${join(dir, 'config.json')} is not valid JSON: ${(e as Error).message}`);
  }
  return parseConfig(json, dir);
}
