"""Stage-0 copy data: JSONL in emit.ts's format (task, input, target, contextChars) whose answers are long copies.

    /usr/bin/python3 tools/train/copy_data.py --out copy.jsonl --n 20000 --seed 1

Tasks (loss falls on every answer token, so each sample carries 50-160 supervised copy tokens instead of 7):
  copy_digits  random 7-digit strings, then the same strings again (pure induction: copy the next token);
  kv_list      10-20 `key-word: 7-digit value` lines, answer lists ALL values in order;
  kv_query     same lines, answer is the value of 1-4 queried keys (lookup, as in niah_multikey);
  copy_words   30-60 random single-token words (pool from --tokenizer), then the same words again: with ~340
               distinct symbols the previous token alone says where to copy from, unlike 10 digits.
"""
import argparse
import json
import random

ADJ = ("ample", "odd", "healthy", "cubic", "solid", "quiet", "brave", "tiny", "loud", "green", "calm", "wild", "shiny",
       "rough", "sweet", "bitter", "frozen", "gentle", "hollow", "lucky", "modern", "narrow", "proud", "rapid", "silent")
NOUN = ("carrot", "cheese", "belt", "button", "doctor", "mirror", "river", "castle", "pencil", "garden", "rocket", "lemon",
        "window", "tiger", "basket", "candle", "forest", "hammer", "island", "jacket", "ladder", "planet", "saddle", "violin")


def value(rng):
    return "".join(rng.choice("0123456789") for _ in range(7))


def kv_lines(rng, n):
    keys = rng.sample([f"{a}-{b}" for a in ADJ for b in NOUN], n)
    return keys, [value(rng) for _ in keys]


def sample(rng, task, pool):
    if task == "copy_words":
        words = "".join(rng.choice(pool) for _ in range(rng.randint(30, 60)))
        ctx = "Remember these words:" + words + "\n"
        return ctx, ctx + "Repeat them in order:", words + "."
    if task == "copy_digits":
        vals = [value(rng) for _ in range(rng.randint(6, 16))]
        ctx = "Remember these numbers:\n" + "\n".join(vals) + "\n"
        return ctx, ctx + "Repeat them in order:", " " + " ".join(vals) + "."
    n = rng.randint(10, 20)
    keys, vals = kv_lines(rng, n)
    ctx = "Here are some keys and their values.\n" + "".join(f"{k}: {v}\n" for k, v in zip(keys, vals))
    if task == "kv_list":
        return ctx, ctx + "List every value in order:", " " + " ".join(vals) + "."
    q = rng.sample(range(n), rng.randint(1, 4))
    return ctx, ctx + "What are the values for " + ", ".join(keys[i] for i in q) + "?", \
        " " + " ".join(vals[i] for i in q) + "."


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tasks", default="copy_digits,kv_list,kv_query")
    ap.add_argument("--tokenizer", help="tokenizer dir; needed for copy_words (its single-token ' word' entries)")
    a = ap.parse_args()
    pool = []
    if a.tokenizer:
        import os
        import sys
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from tokenizer import BPETokenizer
        tok = BPETokenizer.load(a.tokenizer)
        pool = [w for w in (tok.decode([i]) for i in range(tok.eos_id + 1, len(tok)))
                if len(w) >= 3 and w[0] == " " and w[1:].isalpha() and len(tok.encode(w)) == 1]
    rng = random.Random(a.seed)
    tasks = a.tasks.split(",")
    with open(a.out, "w") as f:
        for i in range(a.n):
            task = tasks[i % len(tasks)]
            ctx, inp, tgt = sample(rng, task, pool)
            f.write(json.dumps({"task": task, "index": i, "seed": a.seed, "input": inp, "contextChars": len(ctx),
                                "target": tgt, "references": [tgt.strip(" .")], "generator": "copy_data"}) + "\n")


if __name__ == "__main__":
    main()
