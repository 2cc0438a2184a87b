"""Write a GGUF with random weights in Qwen2.5-0.5B's layer shapes, quantized to Q8_0, for speed
benchmarks beside llama.cpp (`rocketkv bench model --model FILE`).

Layers: 24, hidden 896, 14 query heads and 2 KV heads of 64, FFN 4864, q/k/v biases, tied
embeddings, RoPE base 1e6 (architecture "qwen2", as Qwen2.5-0.5B). The tokenizer, and so the
vocabulary (49152 rather than Qwen's 151936), is copied from a GGUF given with --tokenizer-from
(SmolLM2-135M-Instruct's, which `npm run fetch:smollm2` downloads): the weights are noise, so
only the shapes matter, and the smaller vocabulary changes only the embedding and output head.

    python3 tools/bench/random_gguf.py --tokenizer-from SMOLLM2.gguf --out qwen-shape-q8_0.gguf
"""
import argparse
import sys

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("random_gguf.py needs the gguf package: pip install -r tools/parity/requirements.txt")

SHAPE = dict(layers=24, hidden=896, heads=14, kv_heads=2, head_dim=64, ffn=4864, rope_base=1e6, eps=1e-6, ctx=32768)


def copy_tokenizer(src: "gguf.GGUFReader", w: "gguf.GGUFWriter") -> int:
    f = src.fields
    def scalar(k):
        return f[k].parts[f[k].data[0]][0].item()
    def string(k):
        return bytes(f[k].parts[f[k].data[0]]).decode("utf-8")
    def strings(k):
        return [bytes(f[k].parts[i]).decode("utf-8") for i in f[k].data]
    tokens = strings("tokenizer.ggml.tokens")
    w.add_tokenizer_model(string("tokenizer.ggml.model"))
    w.add_tokenizer_pre(string("tokenizer.ggml.pre"))
    w.add_token_list(tokens)
    w.add_token_types([int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data])
    w.add_token_merges(strings("tokenizer.ggml.merges"))
    w.add_bos_token_id(scalar("tokenizer.ggml.bos_token_id"))
    w.add_eos_token_id(scalar("tokenizer.ggml.eos_token_id"))
    if "tokenizer.ggml.add_bos_token" in f:
        w.add_add_bos_token(bool(scalar("tokenizer.ggml.add_bos_token")))
    if "tokenizer.chat_template" in f:
        w.add_chat_template(string("tokenizer.chat_template"))
    return len(tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer-from", required=True, help="GGUF file whose tokenizer is copied")
    ap.add_argument("--out", required=True, help="output .gguf path")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    s = SHAPE
    rng = np.random.default_rng(a.seed)
    w = gguf.GGUFWriter(a.out, "qwen2")
    w.add_name("random weights, Qwen2.5-0.5B layer shapes")
    vocab = copy_tokenizer(gguf.GGUFReader(a.tokenizer_from), w)
    w.add_block_count(s["layers"])
    w.add_context_length(s["ctx"])
    w.add_embedding_length(s["hidden"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_rope_freq_base(s["rope_base"])
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)

    def q8(name, rows, cols, std):
        data = (rng.standard_normal((rows, cols), dtype=np.float32) * std).astype(np.float32)
        w.add_tensor(name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def f32(name, n, std, mean=0.0):
        w.add_tensor(name, (mean + rng.standard_normal(n, dtype=np.float32) * std).astype(np.float32))

    D, F, hd = s["hidden"], s["ffn"], s["head_dim"]
    qd, kvd = s["heads"] * hd, s["kv_heads"] * hd
    q8("token_embd.weight", vocab, D, 0.02)
    for l in range(s["layers"]):
        p = f"blk.{l}."
        f32(p + "attn_norm.weight", D, 0.02, 1.0)
        q8(p + "attn_q.weight", qd, D, D ** -0.5)
        f32(p + "attn_q.bias", qd, 0.02)
        q8(p + "attn_k.weight", kvd, D, D ** -0.5)
        f32(p + "attn_k.bias", kvd, 0.02)
        q8(p + "attn_v.weight", kvd, D, D ** -0.5)
        f32(p + "attn_v.bias", kvd, 0.02)
        q8(p + "attn_output.weight", D, qd, qd ** -0.5)
        f32(p + "ffn_norm.weight", D, 0.02, 1.0)
        q8(p + "ffn_gate.weight", F, D, D ** -0.5)
        q8(p + "ffn_up.weight", F, D, D ** -0.5)
        q8(p + "ffn_down.weight", D, F, F ** -0.5)
        print(f"layer {l + 1}/{s['layers']}", file=sys.stderr, flush=True)
    f32("output_norm.weight", D, 0.02, 1.0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    print(f"wrote {a.out}: vocab {vocab}, {s['layers']} layers, Q8_0", file=sys.stderr)


if __name__ == "__main__":
    main()
