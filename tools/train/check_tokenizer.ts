/**
 * Encodes texts with the engine's tokenizer (src/model/tokenizer.ts, i.e. @huggingface/tokenizers)
 * so tokenizer.py can check that its Python encoder, used for training data, matches id for id.
 *   node --import tsx tools/train/check_tokenizer.ts TOKENIZER_DIR texts.json  -> [{ids, decoded}]
 */
import * as fs from 'node:fs';
import { Tokenizer } from '../../src/model/tokenizer.ts';

const [dir, file] = process.argv.slice(2);
if (!dir || !file) throw new Error('usage: check_tokenizer.ts TOKENIZER_DIR texts.json');
const tk = await Tokenizer.load(dir);
const texts = JSON.parse(fs.readFileSync(file, 'utf8')) as string[];
const out = texts.map((t) => {
  const ids = tk.encode(t);
  return { ids, decoded: tk.decode(ids, { skipSpecialTokens: true }) };
});
process.stdout.write(JSON.stringify(out));
