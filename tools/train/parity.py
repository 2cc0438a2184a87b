"""Checks a checkpoint written by train.py against the project's TypeScript side:
1. logits of train.py's PyTorch model (loaded back from model.safetensors) vs the TypeScript Llama
   reference (check_model.ts) on the first tokens of a sample;
2. greedy answers of PyTorch vs the engine CLI (test/helpers/rocketkv.ts run) on whole samples.

    /usr/bin/python3 tools/train/parity.py --model OUTDIR --data heldout.jsonl [--n 4]
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer import BPETokenizer  # noqa: E402
from train import Llama, greedy  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        assert h["dtype"] == "F32", f"{name}: {h['dtype']}"
        a, b = h["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(h["shape"])
    return out


def load_model(d):
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    m = Llama(c)
    sd = read_safetensors(os.path.join(d, "model.safetensors"))
    if c["tie_word_embeddings"]:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    m.load_state_dict(sd)
    return m.eval()


def node(args):
    return subprocess.run(["node", "--import", "tsx", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=4, help="samples for the greedy comparison")
    ap.add_argument("--logit-tokens", type=int, default=48)
    a = ap.parse_args()
    torch.set_num_threads(2)
    tok = BPETokenizer.load(a.model)
    model = load_model(a.model)
    samples = [json.loads(l) for l in open(a.data)][: a.n]

    ids = [tok.bos_id] + tok.encode(samples[0]["input"])[: a.logit_tokens - 1]
    with torch.no_grad():
        py = model(torch.tensor([ids]), torch.arange(len(ids))[None])[0]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(ids, f)
    try:
        ts = torch.tensor(json.loads(node([os.path.join(HERE, "check_model.ts"), a.model, f.name])))
    finally:
        os.unlink(f.name)
    diff = float((py - ts).abs().max())
    scale = float(py.abs().max())
    print(f"logits: max |torch - TS reference| = {diff:.2e} over {len(ids)} positions (max |logit| {scale:.1f})")
    ok = diff < 1e-3 * max(1.0, scale)

    for s in samples:
        prompt = [tok.bos_id] + tok.encode(s["input"])
        mine = tok.decode(greedy(model, prompt, tok.eos_id, 24))
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(s["input"])
        try:
            out = node([os.path.join(ROOT, "test", "helpers", "rocketkv.ts"), "run", "--model", a.model, "-n", "24", "-f", f.name])
        finally:
            os.unlink(f.name)
        engine = out.split("\nprompt ")[0] if "\nprompt " in out else out
        same = engine.strip() == mine.strip() or engine.startswith(mine)
        ok &= same
        score = sum(r.lower() in mine.lower() for r in s["references"]) / len(s["references"])
        print(f"{s['task']} ({len(prompt)} tokens): torch {mine!r} engine {engine.strip()!r} refs {s['references']} "
              f"score {score:.2f} {'same' if same else 'DIFFERENT'}")
    print("parity OK" if ok else "parity FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
