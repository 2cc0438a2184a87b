/**
 * Logits of a checkpoint by the project's plain-TypeScript Llama reference (test/helpers/reference.ts,
 * written from transformers' semantics), for parity.py to compare with train.py's PyTorch model.
 *   node --import tsx tools/train/check_model.ts MODEL_DIR tokens.json  -> [[logit, ...] per position]
 */
import * as fs from 'node:fs';
import { readModelConfig } from '../../src/engine/engine.ts';
import { openSafetensors } from '../../src/model/safetensors.ts';
import { referenceLogits } from '../../test/helpers/reference.ts';

const [dir, file] = process.argv.slice(2);
if (!dir || !file) throw new Error('usage: check_model.ts MODEL_DIR tokens.json');
const cfg = await readModelConfig(dir);
const src = await openSafetensors(dir);
const tokens = JSON.parse(fs.readFileSync(file, 'utf8')) as number[];
const logits = referenceLogits(cfg, src, tokens);
src.close();
process.stdout.write(JSON.stringify(logits.map((row) => Array.from(row))));
