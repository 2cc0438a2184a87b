"""NVIDIA kvpress's presses on the samples of `rocketkv eval prompts`: same prompts (our token ids),
same model (transformers loading the same GGUF), same metric, written as runs that
`rocketkv eval report` tables beside ours.

  rocketkv eval prompts --model M --tasks niah_single_1 --lengths 1024 --samples 5 --seed 0 --out P.jsonl
  python3 tools/kvpress/run_presses.py P.jsonl --presses snapkv,streaming_llm --budgets 128 --out DIR

Modes, both run the way kvpress runs them, on our ids:
  query-agnostic  context_ids are prefilled under the press (compressed), then question_ids (question
                  + answer prefix) go through the compressed cache and greedy decoding follows:
                  KVPressTextGenerationPipeline's default, the question given apart from the context.
  query-aware     kvpress evaluate.py's `query_aware`: the question joins the context, so
                  input_ids[:question_end] (context + question) is compressed and the answer prefix
                  follows uncompressed (the pipeline's question_ids then hold the answer prefix only).
Budget B -> compression_ratio = 1 - (B + 0.25) / L per sample, L = the tokens compressed (context,
  or context + question): kvpress keeps int(L * (1 - ratio)) = B per KV head (round() = B in the
  PyramidKV fallback too); B >= L gives ratio 0, nothing removed. See tools/kvpress/README.md.
Score: string_match_all x 100 (the same formula as src/eval/metrics.ts).
Each run writes OUT/<task>__<length>__<model>__kvpress-<press>__<budget>[__<mode>]/ with
  predictions.csv, config.yaml and metrics.json (last: its presence marks the run finished;
  finished runs of the same samples are skipped, runs of other samples refused).
"""
import argparse
import contextlib
import csv
import json
import os
import re
import sys
import time

# Each name: kvpress class, its arguments as the press is built (kvpress defaults, read in its
# source), and our method it sits beside. A spec "name:key=value[:key=value]" is a variant.
PRESSES = {
    "snapkv": ("SnapKVPress", {"window_size": 64, "kernel_size": 5}, "snapkv"),
    "streaming_llm": ("StreamingLLMPress", {"n_sink": 4}, "streaming_llm"),
    "pyramidkv": ("PyramidKVPress", {"window_size": 64, "kernel_size": 5, "beta": 20}, "pyramidkv"),
    "adakv": ("AdaKVPress", {"alpha_safeguard": 0.2, "window_size": 64, "kernel_size": 5}, "adakv"),
    "knorm": ("KnormPress", {}, "knorm"),
    "tova": ("TOVAPress", {}, "tova"),
    "expected_attention": ("ExpectedAttentionPress", {"n_future_positions": 512, "n_sink": 4, "use_covariance": True, "use_vnorm": True, "epsilon": 0.0}, "expected_attention"),
    # No press: the full cache through the same transformers model (budget "full").
    "none": (None, {}, "full"),
}
DEFAULT_PRESSES = ["snapkv", "streaming_llm", "pyramidkv", "adakv", "knorm", "tova", "expected_attention"]
MODES = ["query-agnostic", "query-aware"]


def string_match_all(prediction, references):
    """Fraction of references found (case-insensitive substring) in the prediction, as src/eval/metrics.ts."""
    if len(references) == 0:
        return 0
    p = prediction.lower()
    return sum(1 for r in references if r.lower() in p) / len(references)


def compression_ratio(budget, tokens):
    """The ratio that makes kvpress keep `budget` of `tokens` (int() and round() of L * (1 - ratio))."""
    if budget is None or budget >= tokens:
        return 0.0
    return (tokens - budget - 0.25) / tokens


def parse_value(v):
    if v in ("true", "false"):
        return v == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def parse_press_spec(spec):
    """'snapkv:window_size=32:kernel_size=7' -> ('snapkv', {'window_size': 32, 'kernel_size': 7})."""
    name, *pairs = spec.split(":")
    if name not in PRESSES:
        raise SystemExit(f"run_presses: unknown press '{name}'; choose from: {', '.join(PRESSES)}")
    opts = {}
    for p in pairs:
        if "=" not in p:
            raise SystemExit(f"run_presses: options follow the press name as :key=value, got '{p}'")
        k, v = p.split("=", 1)
        if k not in PRESSES[name][1]:
            raise SystemExit(f"run_presses: {name}: unknown option '{k}'; valid options: {', '.join(PRESSES[name][1]) or 'none'}")
        opts[k] = parse_value(v)
    return name, {**PRESSES[name][1], **opts}


def make_press(name, opts, ratio):
    """The kvpress object of one press at one compression ratio (None for no press)."""
    import kvpress

    cls = PRESSES[name][0]
    if cls is None:
        return None
    if cls == "AdaKVPress":
        inner = {k: v for k, v in opts.items() if k != "alpha_safeguard"}
        return kvpress.AdaKVPress(press=kvpress.SnapKVPress(compression_ratio=ratio, **inner), alpha_safeguard=opts["alpha_safeguard"])
    return getattr(kvpress, cls)(compression_ratio=ratio, **opts)


def run_id(task, length, model, method, budget, mode):
    """The runner's runId (src/eval/runner.ts): ':' -> '+', mode suffix unless query-aware."""
    m = re.sub(r"[^A-Za-z0-9._=+-]", "_", method.replace(":", "+"))
    parts = [task, str(length), model, m, "full" if budget is None else str(budget)]
    if mode != "query-aware":
        parts.append(mode)
    return "__".join(parts)


def split_ids(line, mode):
    """(compressed ids, ids after them) of one sample in one mode."""
    if mode == "query-agnostic":
        return line["context_ids"], line["question_ids"]
    cut = line["question_end"]
    if cut is None:
        # The answer prefix merged with the question in tokenization: compress all but the last token.
        print(f"run_presses: sample {line['task']} #{line['index']}: the answer prefix does not start a token; compressing all but the last prompt token", file=sys.stderr)
        cut = len(line["input_ids"]) - 1
    return line["input_ids"][:cut], line["input_ids"][cut:]


def cache_bytes(cache):
    return sum(l.keys.numel() * l.keys.element_size() + l.values.numel() * l.values.element_size() for l in cache.layers)


def run_sample(model, pipe, press, ctx, question, max_new_tokens):
    """KVPressTextGenerationPipeline._forward for one question and a prefill press, on our ids."""
    import torch
    from transformers import DynamicCache

    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    cache = DynamicCache()
    with torch.no_grad():
        with press(model) if press is not None else contextlib.nullcontext():
            model.model(input_ids=torch.tensor([ctx]), past_key_values=cache)
        layers = model.model.layers
        # Tokens each KV head keeps: its cache length, less the keys AdaKV masks (it frees nothing).
        kept = []
        for i, layer in enumerate(layers):
            n = cache.layers[i].keys.shape[2]
            masked = getattr(layer.self_attn, "masked_key_indices", None)
            kept.append(n - (0 if masked is None else masked[0].numel() / cfg.num_key_value_heads))
        kept_bytes = cache_bytes(cache)
        kept_len = cache.get_seq_length()
        t0 = time.perf_counter()
        answer = pipe.generate_answer(question_ids=torch.tensor([question]), cache=cache, context_length=len(ctx), max_new_tokens=max_new_tokens)
        seconds = time.perf_counter() - t0
    token_bytes = len(layers) * cfg.num_key_value_heads * head_dim * 2 * cache.layers[0].keys.element_size()
    # generate_answer feeds the question, then every generated token but the last.
    steps = cache.get_seq_length() - kept_len - len(question)
    return {
        "prediction": answer,
        "kept_tokens_per_head": sum(kept) / len(kept),
        "stored_bytes": cache_bytes(cache),
        "full_bytes": (len(ctx) + len(question) + steps) * token_bytes,
        # Each decode step attends to the whole cache (AdaKV's masked keys included) and its new token.
        "read_bytes_per_step": kept_bytes + token_bytes * (len(question) + (steps + 1) / 2) if steps > 0 else 0,
        "generated_tokens": steps + 1,
        "seconds": seconds,
    }


def load_model(gguf, threads):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    import kvpress  # noqa: F401  (registers the kv-press-text-generation pipeline, patches attention)

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    folder, name = os.path.dirname(gguf), os.path.basename(gguf)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    pipe = pipeline("kv-press-text-generation", model=model, tokenizer=tok, device="cpu")
    return model, tok, pipe


def main():
    ap = argparse.ArgumentParser(description="kvpress presses on the samples of `rocketkv eval prompts`, as runs `rocketkv eval report` tables")
    ap.add_argument("prompts", help="JSONL written by `rocketkv eval prompts`")
    ap.add_argument("--presses", default=",".join(DEFAULT_PRESSES), help=f"comma-separated, name[:key=value...]; names: {', '.join(PRESSES)}")
    ap.add_argument("--budgets", default="128", help="KV tokens kept per head (after compression), comma-separated")
    ap.add_argument("--modes", default=",".join(MODES), help="query-agnostic, query-aware, or both")
    ap.add_argument("--out", required=True, help="output directory (finished runs in it are skipped)")
    ap.add_argument("--gguf", help="the GGUF to load (default: model_path of the JSONL)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine: more threads than free cores slow torch down tenfold)")
    args = ap.parse_args()

    with open(args.prompts) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    if not lines:
        raise SystemExit(f"run_presses: {args.prompts} holds no samples")
    for key in ("model", "model_fingerprint", "seed"):
        if len({l[key] for l in lines}) != 1:
            raise SystemExit(f"run_presses: the samples of {args.prompts} differ in {key}; write one file per model and seed")
    presses = [parse_press_spec(s) + (s,) for s in args.presses.split(",")]
    budgets = [int(b) for b in args.budgets.split(",")]
    modes = args.modes.split(",")
    for m in modes:
        if m not in MODES:
            raise SystemExit(f"run_presses: unknown mode '{m}'; choose from: {', '.join(MODES)}")
    gguf = os.path.abspath(args.gguf or lines[0]["model_path"])
    if not os.path.isfile(gguf):
        raise SystemExit(f"run_presses: no GGUF file at {gguf}; pass --gguf")
    model_name, fingerprint, seed = lines[0]["model"], lines[0]["model_fingerprint"], lines[0]["seed"]
    groups = {}
    for l in lines:
        groups.setdefault((l["task"], l["length"]), []).append(l)

    # Every run, and which are finished; a finished run of other samples is refused before any work.
    runs, stale = [], []
    for (task, length), samples in groups.items():
        for name, opts, spec in presses:
            for budget in [None] if PRESSES[name][0] is None else budgets:
                for mode in modes:
                    method = f"kvpress-{spec}"
                    d = os.path.join(args.out, run_id(task, length, model_name, method, budget, mode))
                    mpath = os.path.join(d, "metrics.json")
                    if os.path.exists(mpath):
                        with open(mpath) as f:
                            m = json.load(f)
                        if (m.get("modelFingerprint"), m.get("samples"), m.get("seed")) != (fingerprint, len(samples), seed):
                            stale.append(d)
                        continue
                    runs.append((task, length, samples, name, opts, method, budget, mode, d))
    if stale:
        raise SystemExit(f"run_presses: {len(stale)} finished run(s) in {args.out} were made from other samples or another checkpoint (first: {stale[0]}); give another --out, or delete them")
    if not runs:
        print(f"run_presses: every run is finished in {args.out}", file=sys.stderr)
        return

    import kvpress
    import torch

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    model, tok, pipe = load_model(gguf, args.threads)
    # Stop on the tokens our engine stops on (the GGUF's generation config may name fewer).
    model.generation_config.eos_token_id = lines[0]["eos_token_ids"]
    total = sum(len(r[2]) for r in runs)
    done = 0
    for task, length, samples, name, opts, method, budget, mode, d in runs:
        rows = [["id", "prompt_tokens", "prediction", "references", "score", "compressed_tokens", "compression_ratio", "kept_tokens_per_head"]]
        acc = {"score": 0.0, "stored_bytes": 0.0, "full_bytes": 0.0, "read_bytes_per_step": 0.0, "kept_tokens_per_head": 0.0, "ratio": 0.0}
        tokens, seconds = 0, 0.0
        for l in samples:
            ctx, question = split_ids(l, mode)
            ratio = compression_ratio(budget, len(ctx))
            press = make_press(name, opts, ratio)
            if press is not None and ratio > 0:
                n_kept = kvpress.utils.compute_n_kept(len(ctx), ratio)
                assert n_kept == budget, f"ratio {ratio} keeps {n_kept} of {len(ctx)}, not {budget}"
            r = run_sample(model, pipe, press, ctx, question, l["max_new_tokens"])
            score = string_match_all(r["prediction"], l["references"])
            for k in ("stored_bytes", "full_bytes", "read_bytes_per_step", "kept_tokens_per_head"):
                acc[k] += r[k]
            acc["score"] += score
            acc["ratio"] += ratio
            tokens += r["generated_tokens"]
            seconds += r["seconds"]
            rows.append([l["index"], len(l["input_ids"]), r["prediction"], " | ".join(l["references"]), score * 100, len(ctx), round(ratio, 6), round(r["kept_tokens_per_head"], 2)])
            done += 1
            print(f"kvpress: {done}/{total} samples  {os.path.basename(d)}", file=sys.stderr, flush=True)
        n = len(samples)
        example = make_press(name, opts, 0.0)
        press_repr = None if example is None else repr(example).replace("compression_ratio=0.0", "compression_ratio=<per sample>")
        metrics = {
            "task": task, "length": length, "model": model_name, "method": method, "budget": budget, "mode": mode,
            "depth": None, "samples": n, "seed": seed, "score": acc["score"] / n * 100,
            # Exact tensor bytes (f32), not whole 16-slot blocks as ours; AdaKV's masked keys stay stored.
            "storedKvBytes": acc["stored_bytes"] / n, "fullKvBytes": acc["full_bytes"] / n,
            "readBytesPerStep": acc["read_bytes_per_step"] / n,
            "tokensPerSecond": tokens / seconds if seconds > 0 else 0,
            "modelFingerprint": fingerprint, "turns": None,
            "library": f"kvpress {kvpress_version()}", "press": press_repr,
            "compressionRatio": acc["ratio"] / n, "keptTokensPerHead": acc["kept_tokens_per_head"] / n,
        }
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "predictions.csv"), "w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(rows)
        with open(os.path.join(d, "config.yaml"), "w") as f:
            f.write(to_yaml({
                "model": gguf, "model_fingerprint": fingerprint, "task": task, "length": length, "method": method,
                "budget": budget, "press": metrics["press"], "mode": mode, "samples": n, "seed": seed,
                "prompts": os.path.abspath(args.prompts), "library": metrics["library"], "weights": "f32 (transformers dequantizes the GGUF)",
                "sampling": "greedy", "compression_ratio": "1 - (budget + 0.25) / compressed tokens, per sample",
            }))
        with open(os.path.join(d, "metrics.json.part"), "w") as f:
            f.write(json.dumps(metrics, indent=2) + "\n")
        os.replace(os.path.join(d, "metrics.json.part"), os.path.join(d, "metrics.json"))
        print(f"kvpress: {os.path.basename(d)}: score {metrics['score']:.1f}", file=sys.stderr, flush=True)


def kvpress_version():
    from importlib.metadata import version

    return version("kvpress")


def to_yaml(d):
    """Flat YAML (scalars only), so the script needs no YAML package."""
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in d.items())


if __name__ == "__main__":
    main()
