"""Byte-level BPE for the bundled model: learns merges on task text, writes a Hugging Face
tokenizer.json + tokenizer_config.json, and encodes text the same way @huggingface/tokenizers does.

    /usr/bin/python3 tools/train/tokenizer.py --data data.jsonl --vocab-size 1024 --out OUTDIR

Layout: ids 0-255 are the 256 byte symbols (GPT-2's printable stand-ins), 256 = <s>, 257 = </s>,
then one id per merge. Pre-tokenization is HF's Sequence[Digits(individual_digits), ByteLevel]:
every digit is its own pre-token, so no merge can ever join digits (numbers stay digit-per-token,
which makes copying 7-digit values a per-token lookup). The GPT-2 split regex below is written
with Python `re` classes; it equals the \\p{L}/\\p{N} version on ASCII text, which is all our
tasks produce (tools/train/check_tokenizer.ts compares ids against the JS library to be sure).
"""
import argparse
import collections
import json
import os
import re
import sys

BOS, EOS = "<s>", "</s>"
# HF's Digits(individual_digits=True) in the JS library: /[^\d]+|\d/gu, ASCII digits only.
DIGIT_SPLIT = re.compile(r"[^0-9]+|[0-9]")


# GPT-2's pre-tokenizer pattern with [^\W\d_] for \p{L} and \d for \p{N}; '_' is \w in Python
# but neither a letter nor a number, so it joins the punctuation runs.
GPT2_SPLIT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+")


def _gpt2_split(text):
    return GPT2_SPLIT.findall(text)


def bytes_to_unicode():
    direct = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, n = {}, 0
    for b in range(256):
        if b in direct:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


B2U = bytes_to_unicode()


def pre_tokenize(text):
    """Pre-tokens as byte-symbol strings, in order."""
    pieces = []
    for part in DIGIT_SPLIT.findall(text):
        for tok in _gpt2_split(part):
            pieces.append("".join(B2U[b] for b in tok.encode("utf-8")))
    return pieces


def train_bpe(texts, vocab_size):
    """Greedy BPE: repeatedly merge the most frequent adjacent pair (ties: lexicographically smallest)."""
    n_merges = vocab_size - 258
    freq = collections.Counter()
    for t in texts:
        freq.update(pre_tokenize(t))
    words = [list(w) for w in freq]
    counts = [freq[w] for w in freq]
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pairs[(a, b)] += counts[i]
            where[(a, b)].add(i)
    merges = []
    while len(merges) < n_merges and pairs:
        best = max(pairs.items(), key=lambda kv: (kv[1], tuple(-ord(c) for c in kv[0][0] + "\0" + kv[0][1])))[0]
        if pairs[best] < 2:
            break
        merges.append(best)
        a, b = best
        joined = a + b
        for i in list(where[best]):
            w = words[i]
            c = counts[i]
            for x, y in zip(w, w[1:]):
                pairs[(x, y)] -= c
                if pairs[(x, y)] <= 0:
                    del pairs[(x, y)]
            j, nw = 0, []
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    nw.append(joined)
                    j += 2
                else:
                    nw.append(w[j])
                    j += 1
            words[i] = nw
            for x, y in zip(nw, nw[1:]):
                pairs[(x, y)] += c
                where[(x, y)].add(i)
        where.pop(best, None)
    return merges


class BPETokenizer:
    """Encoder for a tokenizer.json written by this module (or any byte-level BPE of the same shape)."""

    def __init__(self, vocab, merges, bos_id, eos_id):
        self.vocab = vocab
        self.ranks = {tuple(m): r for r, m in enumerate(merges)}
        self.bos_id, self.eos_id = bos_id, eos_id
        self.inv = {i: t for t, i in vocab.items()}
        self.u2b = {u: b for b, u in B2U.items()}
        self.cache = {}

    @classmethod
    def load(cls, directory):
        with open(os.path.join(directory, "tokenizer.json")) as f:
            tj = json.load(f)
        merges = [m.split(" ") if isinstance(m, str) else m for m in tj["model"]["merges"]]
        vocab = dict(tj["model"]["vocab"])
        special = {t["content"]: t["id"] for t in tj["added_tokens"]}
        vocab.update(special)
        return cls(vocab, merges, special.get(BOS), special.get(EOS))

    def _bpe(self, piece):
        if piece in self.cache:
            return self.cache[piece]
        w = list(piece)
        while len(w) > 1:
            ranked = [(self.ranks.get((x, y), 1 << 30), k) for k, (x, y) in enumerate(zip(w, w[1:]))]
            r, k = min(ranked)
            if r == 1 << 30:
                break
            w = w[:k] + [w[k] + w[k + 1]] + w[k + 2:]
        ids = [self.vocab[s] for s in w]
        self.cache[piece] = ids
        return ids

    def encode(self, text):
        ids = []
        for p in pre_tokenize(text):
            ids.extend(self._bpe(p))
        return ids

    def decode(self, ids):
        data = bytearray()
        for i in ids:
            t = self.inv[i]
            if t in (BOS, EOS):
                continue
            data.extend(self.u2b[c] for c in t)
        return data.decode("utf-8", errors="replace")

    def __len__(self):
        return max(self.vocab.values()) + 1


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def write_tokenizer(directory, merges, max_length):
    os.makedirs(directory, exist_ok=True)
    vocab = {B2U[b]: b for b in range(256)}
    bos_id, eos_id = 256, 257
    for k, (a, b) in enumerate(merges):
        vocab[a + b] = 258 + k
    special = lambda content, i: {"id": i, "content": content, "single_word": False, "lstrip": False,
                                  "rstrip": False, "normalized": False, "special": True}
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [special(BOS, bos_id), special(EOS, eos_id)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ]},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {BOS: {"id": BOS, "ids": [bos_id], "tokens": [BOS]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }
    with open(os.path.join(directory, "tokenizer.json"), "w") as f:
        json.dump(tj, f, ensure_ascii=False)
    cfg = {
        "add_bos_token": True, "add_eos_token": False, "bos_token": BOS, "eos_token": EOS, "pad_token": EOS,
        "unk_token": None, "model_max_length": max_length, "clean_up_tokenization_spaces": False,
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return len(vocab) + 2


def read_texts(path, limit):
    texts = []
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            texts.append(d["input"] + d.get("target", ""))
            if len(texts) >= limit:
                break
    return texts


def check_against_js(directory, texts):
    """Encodes `texts` with the engine's Tokenizer (node) and with this module; they must agree id for id."""
    import subprocess, tempfile
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(texts, f)
    try:
        out = subprocess.run(["node", "--import", "tsx", os.path.join(here, "check_tokenizer.ts"), directory, f.name],
                             cwd=root, check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    js = json.loads(out)
    tok = BPETokenizer.load(directory)
    for t, r in zip(texts, js):
        py = [tok.bos_id] + tok.encode(t)
        if py != r["ids"]:
            k = next(i for i, (x, y) in enumerate(zip(py + [-1], r["ids"] + [-1])) if x != y)
            raise SystemExit(f"tokenizer mismatch with the JS library at token {k}: python {py[k:k+8]} js {r['ids'][k:k+8]}")
        if r["decoded"] != t:
            raise SystemExit(f"JS decode does not round-trip: {r['decoded'][:80]!r} vs {t[:80]!r}")
    return f"JS Tokenizer.load agrees on {len(texts)} texts (ids with BOS, decode round-trip)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="JSONL from emit.ts")
    ap.add_argument("--vocab-size", type=int, default=1024)
    ap.add_argument("--max-samples", type=int, default=2000, help="samples read for merge statistics")
    ap.add_argument("--max-length", type=int, default=4096, help="model_max_length written to tokenizer_config.json")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    texts = read_texts(a.data, a.max_samples)
    merges = train_bpe(texts, a.vocab_size)
    n = write_tokenizer(a.out, merges, a.max_length)
    tok = BPETokenizer.load(a.out)
    nbytes = sum(len(t.encode()) for t in texts[:200])
    ntok = sum(len(tok.encode(t)) for t in texts[:200])
    check = check_against_js(a.out, texts[:50])
    print(f"tokenizer: {n} ids ({len(merges)} merges) -> {a.out}; {nbytes / ntok:.2f} bytes/token on the data; {check}", file=sys.stderr)


if __name__ == "__main__":
    main()
