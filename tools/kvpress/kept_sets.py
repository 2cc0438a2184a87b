"""Which needle tokens a kvpress press keeps, per layer and KV head, on one sample of
`rocketkv eval prompts`: the kvpress side of tools/needle_survival.ts (same line format).

  python3 tools/kvpress/kept_sets.py P.jsonl --press pyramidkv --budget 512 --index 2 [--mode query-aware]

The sample's context (query-agnostic) or context + question (query-aware) is prefilled under the
press, as run_presses.py does. A kept position is found by matching each key row left in the cache
against the keys of the same prefill without a press (RoPE'd keys differ per position); for AdaKV,
which frees nothing, the keys it masks (module.masked_key_indices) count as evicted.
Needle tokens: the run of the reference's token ids inside the compressed ids.
"""
import argparse
import json
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
import run_presses as rp  # noqa: E402


def needle_span(ids, value_ids):
    for s in range(len(ids) - len(value_ids), -1, -1):
        if ids[s:s + len(value_ids)] == value_ids:
            return s, s + len(value_ids)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("prompts")
    ap.add_argument("--press", required=True, help="name[:key=value...] as run_presses.py takes it")
    ap.add_argument("--budget", type=int, required=True)
    ap.add_argument("--index", type=int, default=0, help="sample index in the JSONL")
    ap.add_argument("--mode", default="query-aware", choices=rp.MODES)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch
    from transformers import DynamicCache

    lines = [json.loads(l) for l in open(args.prompts) if l.strip()]
    line = next((l for l in lines if l["index"] == args.index), None)
    if line is None:
        raise SystemExit(f"kept_sets: no sample with index {args.index} in {args.prompts}")
    model, tok, _pipe = rp.load_model(line["model_path"], args.threads)
    ctx, _question = rp.split_ids(line, args.mode)
    name, opts = rp.parse_press_spec(args.press)
    press = rp.make_press(name, opts, rp.compression_ratio(args.budget, len(ctx)))
    ref = line["references"][0]
    value_ids = tok.encode(ref, add_special_tokens=False)
    span = needle_span(ctx, value_ids)
    if span is None:
        raise SystemExit(f"kept_sets: the needle {ref} is not a token run of the compressed ids")

    def prefill(p):
        cache = DynamicCache()
        with torch.no_grad():
            with p(model) if p is not None else __import__("contextlib").nullcontext():
                model.model(input_ids=torch.tensor([ctx]), past_key_values=cache)
        return cache

    full = prefill(None)
    pressed = prefill(press)
    print(f"kvpress {args.press} budget {args.budget} {args.mode} on {line['task']} at {line['length']} tokens, sample {args.index}: "
          f"needle {ref} at tokens {span[0]}-{span[1] - 1} of {len(ctx)}")
    for l, layer in enumerate(model.model.layers):
        fk = full.layers[l].keys[0]
        pk = pressed.layers[l].keys[0]
        masked = getattr(layer.self_attn, "masked_key_indices", None)
        for h in range(fk.shape[0]):
            if masked is not None:
                heads = masked[1]
                gone = set(masked[2][heads == h].tolist())
                kept = set(range(fk.shape[1])) - gone
            else:
                # Rows of the pressed cache are rows of the full one: match them exactly.
                index = {tuple(fk[h, j].tolist()): j for j in range(fk.shape[1])}
                kept = {index[tuple(pk[h, j].tolist())] for j in range(pk.shape[1]) if tuple(pk[h, j].tolist()) in index}
            pattern = "".join("1" if j in kept else "0" for j in range(span[0], span[1]))
            print(f"  layer {l} head {h}: kept {len(kept)}/{fk.shape[1]}  needle {pattern}")


if __name__ == "__main__":
    main()
