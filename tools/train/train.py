"""Trains a tiny Llama (Hugging Face LlamaForCausalLM layout) on RULER-style tasks emitted by emit.ts.

    /usr/bin/python3 tools/train/train.py --data train.jsonl --tokenizer TOKDIR --out OUTDIR [--minutes 100]

Plain PyTorch 1.13 (no SDPA there): RMSNorm, rotate-half RoPE, SwiGLU, grouped-query attention
written out, all with transformers' Llama semantics, so OUTDIR (config.json, model.safetensors in f32
with HF tensor names, tokenizer files) loads unchanged in our engine and in transformers.
Loss: cross-entropy on the answer tokens (+ </s>), plus --lm-weight x LM loss on the prompt.
Long positions from short windows (PoSE, skip-wise): each sample keeps its tokens contiguous but
its position ids jump at 1-3 random cut points inside the context, so the needle-to-question
distance spans up to --max-positions while the physical sequence stays short.
"""
import argparse
import contextlib
import gzip
import json
import lzma
import math
import os
import random
import shutil
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer import BPETokenizer  # noqa: E402


# ---------------------------------------------------------------- model (HF Llama semantics)

class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


ATTN_BLOCK = 256  # query rows per block in the unfused causal attention


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.kv, self.d = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        D = c["hidden_size"]
        self.q_proj = nn.Linear(D, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(D, self.kv * self.d, bias=False)
        self.v_proj = nn.Linear(D, self.kv * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, D, bias=False)

    def forward(self, x, cos, sin, mask, sel=None):
        """sel: optional [B, S] positions whose outputs are wanted (queries only there; keys and values
        everywhere), with mask then [B, 1, S, T]; the result is [B, S, D]."""
        B, T, _ = x.shape
        xq, cq, sq = x, cos, sin
        if sel is not None:
            xq = x.gather(1, sel[..., None].expand(-1, -1, x.shape[-1]))
            cq = cos.expand(B, -1, -1, -1).gather(2, sel[:, None, :, None].expand(-1, 1, -1, cos.shape[-1]))
            sq = sin.expand(B, -1, -1, -1).gather(2, sel[:, None, :, None].expand(-1, 1, -1, sin.shape[-1]))
        S = xq.shape[1]
        q = self.q_proj(xq).view(B, S, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kv, self.d).transpose(1, 2)
        q = q * cq + rotate_half(q) * sq
        k = k * cos + rotate_half(k) * sin
        # HF repeat_kv: KV head j serves query heads j*rep .. j*rep+rep-1.
        rep = self.h // self.kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        if mask is None:  # fused causal attention (PyTorch 2: flash / memory-efficient kernels)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif sel is not None:
            att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.d)) + mask
            y = att.softmax(-1) @ v
        else:  # causal, in blocks of queries that skip the keys above the diagonal
            ys = []
            for s0 in range(0, T, ATTN_BLOCK):
                s1 = min(T, s0 + ATTN_BLOCK)
                att = (q[:, :, s0:s1] @ k[:, :, :s1].transpose(-1, -2)) * (1.0 / math.sqrt(self.d)) + mask[..., s0:s1, :s1]
                ys.append(att.softmax(-1) @ v[:, :, :s1])
            y = torch.cat(ys, dim=2)
        y = y.transpose(1, 2).reshape(B, S, self.h * self.d)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, I = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(D, I, bias=False)
        self.up_proj = nn.Linear(D, I, bias=False)
        self.down_proj = nn.Linear(I, D, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask, sel=None):
        a = self.self_attn(self.input_layernorm(x), cos, sin, mask, sel)
        x = (x if sel is None else x.gather(1, sel[..., None].expand(-1, -1, x.shape[-1]))) + a
        return x + self.mlp(self.post_attention_layernorm(x))


class Inner(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class Llama(nn.Module):
    """Parameter names match transformers' LlamaForCausalLM state_dict (model.*, lm_head)."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Inner(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        if c["tie_word_embeddings"]:
            self.lm_head.weight = self.model.embed_tokens.weight
        d = c["head_dim"]
        self.register_buffer("inv_freq", 1.0 / (c["rope_theta"] ** (torch.arange(0, d, 2).float() / d)), persistent=False)
        std = c["initializer_range"]
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, std)

    def forward(self, ids, pos, sel=None):
        """ids, pos: [B, T] int64 (pos: RoPE position ids). Returns logits [B, T, V], or with sel ([B, S]
        positions) the logits at those positions only, [B, S, V]: the last layer then runs its queries,
        MLP and the LM head there alone (the same numbers; training needs no other outputs)."""
        B, T = ids.shape
        freqs = pos[..., None].float() * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # [B, 1, T, d]
        cos, sin = emb.cos(), emb.sin()
        # Batches are right-padded, so the causal mask alone keeps real tokens off the padding.
        fused = hasattr(F, "scaled_dot_product_attention") and sel is None
        mask = None if fused else torch.full((T, T), float("-inf"), device=ids.device).triu(1)[None, None]
        x = self.model.embed_tokens(ids)
        last = len(self.model.layers) - 1
        for i, layer in enumerate(self.model.layers):
            if i == last and sel is not None:
                m = torch.arange(T, device=ids.device)[None, None, :] > sel[:, :, None]  # key after query
                x = layer(x, cos, sin, torch.zeros(m.shape, device=ids.device).masked_fill(m, float("-inf"))[:, None], sel)
            else:
                x = layer(x, cos, sin, mask)
        return self.lm_head(self.model.norm(x))


def make_config(a, vocab_size, bos_id, eos_id):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": a.hidden, "intermediate_size": a.intermediate, "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "head_dim": a.hidden // a.heads,
        "vocab_size": vocab_size, "rms_norm_eps": 1e-5, "rope_theta": a.rope_theta, "rope_scaling": None,
        "max_position_embeddings": a.max_positions, "tie_word_embeddings": True,
        "bos_token_id": bos_id, "eos_token_id": eos_id, "hidden_act": "silu",
        "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False, "pretraining_tp": 1,
        "initializer_range": 0.02, "use_cache": True, "torch_dtype": "float32",
    }


# ---------------------------------------------------------------- checkpoint files

def write_safetensors(path, tensors):
    """safetensors by hand: u64 LE header length, JSON header (padded to 8 bytes), raw f32 data."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous().cpu()
        data = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def save_model(out, model, config, tok_dir, extra):
    os.makedirs(out, exist_ok=True)
    sd = model.state_dict()
    if config["tie_word_embeddings"]:
        sd.pop("lm_head.weight", None)  # HF ties it back to model.embed_tokens.weight
    write_safetensors(os.path.join(out, "model.safetensors"), sd)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]}, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, name), os.path.join(out, name))
    with open(os.path.join(out, "training.json"), "w") as f:
        json.dump(extra, f, indent=2)


# ---------------------------------------------------------------- data

def open_text(path):
    """Plain, .gz or .xz JSONL."""
    if path.endswith(".xz"):
        return lzma.open(path, "rt")
    if path.endswith(".gz"):
        return gzip.open(path, "rt")
    return open(path)


class FastEncoder:
    """Hugging Face `tokenizers` (Rust) on the same tokenizer.json, where installed: batch encoding for
    large data sets. Checked against the pure-Python encoder before use."""

    def __init__(self, tok_dir, slow):
        from tokenizers import Tokenizer
        self.t = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
        self.slow = slow

    def encode_batch(self, texts):
        return [e.ids for e in self.t.encode_batch(texts, add_special_tokens=False)]

    def check(self, texts):
        for text in texts:
            a, b = self.slow.encode(text), self.encode_batch([text])[0]
            if a != b:
                raise SystemExit(f"tokenizers and tokenizer.py disagree on {text[:80]!r}: {a[:20]} vs {b[:20]}")


def encoder_for(tok, tok_dir):
    try:
        return FastEncoder(tok_dir, tok)
    except ImportError:
        return None


def load_samples(path, tok, max_tokens, fast=None):
    """-> list of (ids, answer spans [(start, end)], n_context, task) that fit in max_tokens.
    ids = BOS + input + target + EOS, then for each multi-turn followup: its input + target + EOS
    (the engine's conversations keep each reply's </s> in the cache before the next question)."""
    with open_text(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    texts, where = [], []
    for d in rows:
        where.append(len(texts))
        texts += [d["input"], d["target"], d["input"][: d.get("contextChars", 0)]]
        for fu in d.get("followups") or []:
            texts += [fu["input"], fu["target"]]
    if fast is not None:
        fast.check(texts[:30])
        enc = []
        for i in range(0, len(texts), 3000):
            enc += fast.encode_batch(texts[i: i + 3000])
    else:
        enc = [tok.encode(t) for t in texts]
    out, dropped = [], 0
    for j, d in enumerate(rows):
        w = where[j]
        ids = [tok.bos_id] + enc[w]
        n_ctx = 1 + len(enc[w + 2]) if "contextChars" in d else len(ids) - 48
        n_ctx = max(2, min(n_ctx - 1, len(ids) - 1))
        spans = [(len(ids), len(ids) + len(enc[w + 1]) + 1)]
        ids += enc[w + 1] + [tok.eos_id]
        for k in range(len(d.get("followups") or [])):
            ids += enc[w + 3 + 2 * k]
            spans.append((len(ids), len(ids) + len(enc[w + 4 + 2 * k]) + 1))
            ids += enc[w + 4 + 2 * k] + [tok.eos_id]
        if len(ids) > max_tokens:
            dropped += 1
            continue
        out.append((ids, spans, n_ctx, d["task"]))
    return out, dropped


def pose_positions(n, n_ctx, max_pos, rng, p_dense):
    """Position ids for n tokens: contiguous runs with gaps at 1-3 cut points inside [1, n_ctx)."""
    if rng.random() < p_dense or n >= max_pos or n_ctx < 3:
        return list(range(n))
    span = rng.randint(n, max_pos)
    extra = span - n
    cuts = sorted(rng.sample(range(1, n_ctx), min(rng.randint(1, 3), n_ctx - 1)))
    # Random split of `extra` among the cuts.
    marks = sorted(rng.randint(0, extra) for _ in range(len(cuts) - 1))
    gaps = [b - a for a, b in zip([0] + marks, marks + [extra])]
    pos, shift, k = [], 0, 0
    for i in range(n):
        while k < len(cuts) and i == cuts[k]:
            shift += gaps[k]
            k += 1
        pos.append(i + shift)
    return pos


def make_batch(samples, rng, a):
    T = max(len(s[0]) for s in samples)
    B = len(samples)
    ids = torch.zeros(B, T, dtype=torch.long)
    pos = torch.zeros(B, T, dtype=torch.long)
    real = torch.zeros(B, T, dtype=torch.bool)
    w = torch.zeros(B, T)  # loss weight per predicted position (predicting token t+1 at t)
    for b, (seq, spans, n_ctx, _) in enumerate(samples):
        n = len(seq)
        ids[b, :n] = torch.tensor(seq)
        pos[b, :n] = torch.tensor(pose_positions(n, n_ctx, a.pose_span or a.max_positions, rng, a.dense_prob))
        real[b, :n] = True
        w[b, : n - 1] = a.lm_weight
        for s0, s1 in spans:
            w[b, s0 - 1: s1 - 1] = 1.0
    return ids, pos, real, w


# ---------------------------------------------------------------- training

def lr_at(step, a, elapsed=0.0):
    """Warmup + cosine over this stage: steps count from a.stage_start (the resume step with --restart-schedule).
    With --time-schedule the cosine follows the wall clock over --minutes instead (whichever is further)."""
    step -= a.stage_start
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p = min(1.0, (step - a.warmup) / max(1, a.steps - a.warmup))
    if a.time_schedule and a.minutes:
        p = max(p, min(1.0, elapsed / (a.minutes * 60)))
    return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


@torch.no_grad()
def greedy(model, prompt, eos_id, max_new):
    """Greedy continuation with full recomputation (answers are short)."""
    ids = list(prompt)
    dev = next(model.parameters()).device
    for _ in range(max_new):
        x = torch.tensor([ids], device=dev)
        nxt = int(model(x, torch.arange(len(ids), device=dev)[None])[0, -1].float().argmax())
        if nxt == eos_id:
            break
        ids.append(nxt)
    return ids[len(prompt):]


@torch.no_grad()
def evaluate(model, samples, tok):
    """Teacher-forced, dense positions: exact answers (every answer token argmax-correct, which is what
    greedy decoding would produce), answer-token accuracy and loss; overall and per task."""
    model.eval()
    per = {}
    dev = next(model.parameters()).device
    for seq, spans, _, task in samples:
        x = torch.tensor([seq], device=dev)
        full = model(x, torch.arange(len(seq), device=dev)[None])[0].float()
        at = torch.tensor([t for s0, s1 in spans for t in range(s0, s1)], device=dev)
        logits = full[at - 1]
        y = x[0, at]
        hit = logits.argmax(-1) == y
        r = per.setdefault(task, [0, 0, 0, 0.0, 0])  # samples, exact, correct tokens, loss sum, tokens
        r[0] += 1
        r[1] += int(bool(hit.all()))
        r[2] += int(hit.sum())
        r[3] += float(F.cross_entropy(logits, y, reduction="sum"))
        r[4] += len(y)
    model.train()
    tot = [sum(r[i] for r in per.values()) for i in range(5)]
    summary = lambda r: {"n": r[0], "exact": r[1] / r[0], "token_acc": r[2] / r[4], "answer_loss": r[3] / r[4]}
    return summary(tot), {t: summary(r) for t, r in sorted(per.items())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="training JSONL from emit.ts")
    ap.add_argument("--eval-data", help="held-out JSONL (e.g. other seed, real lengths without PoSE)")
    ap.add_argument("--tokenizer", required=True, help="directory with tokenizer.json from tokenizer.py")
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=768)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--max-positions", type=int, default=4096, help="PoSE target span and max_position_embeddings")
    ap.add_argument("--pose-span", type=int, default=0, help="longest position span PoSE draws (default: --max-positions)")
    ap.add_argument("--max-tokens", type=int, default=1024, help="longest physical sequence kept")
    ap.add_argument("--dense-prob", type=float, default=0.2, help="share of samples trained without position skips")
    ap.add_argument("--no-pose", action="store_true", help="dense positions for every sample (same as --dense-prob 1)")
    ap.add_argument("--batch-tokens", type=int, default=4096, help="tokens per optimizer step (padded)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--steps", type=int, default=2000, help="schedule length (the cosine ends here)")
    ap.add_argument("--stop-step", type=int, default=0, help="stop at this (absolute) step, schedule unchanged (0: at the end of the schedule)")
    ap.add_argument("--minutes", type=float, default=0, help="stop after this wall time (0: run all steps)")
    ap.add_argument("--time-schedule", action="store_true", help="cosine over --minutes of wall time (when the step rate is unknown)")
    ap.add_argument("--lm-weight", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when available); cuda trains in bf16 autocast")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    ap.add_argument("--init", help="directory with a state.pt to start this stage from (weights + optimizer); OUT gets the new stage")
    ap.add_argument("--restart-schedule", action="store_true",
                    help="with --resume/--init: warmup + cosine start again at the resumed step and last --steps more steps")
    ap.add_argument("--eval-n", type=int, default=32, help="held-out samples used for evaluation (first N)")
    a = ap.parse_args()
    if a.no_pose:
        a.dense_prob = 1.0
    a.stage_start = 0

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    dev = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else ("cpu" if a.device == "auto" else a.device))
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
    tok = BPETokenizer.load(a.tokenizer)
    fast = encoder_for(tok, a.tokenizer)
    t0 = time.time()
    train, dropped = load_samples(a.data, tok, a.max_tokens, fast)
    held = load_samples(a.eval_data, tok, 1 << 30, fast)[0][: a.eval_n] if a.eval_data else []
    n_tok = sum(len(s[0]) for s in train)
    print(f"device {dev}{' (bf16 autocast)' if dev.type == 'cuda' else ''}, torch {torch.__version__}, encoder {'tokenizers' if fast else 'tokenizer.py'}", flush=True)
    print(f"data: {len(train)} samples ({dropped} over {a.max_tokens} tokens dropped), {n_tok} tokens, "
          f"mean {n_tok / max(1, len(train)):.0f}; {len(held)} held-out; tokenized in {time.time() - t0:.1f}s", flush=True)

    config = make_config(a, len(tok), tok.bos_id, tok.eos_id)
    model = Llama(config).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters, config {json.dumps({k: config[k] for k in ('hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'vocab_size')})}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    step, seen_tokens, log = 0, 0, []
    state_path = os.path.join(a.out, "state.pt")
    src = os.path.join(a.init, "state.pt") if a.init else state_path
    if (a.resume or a.init) and os.path.exists(src):
        st = torch.load(src, map_location=dev)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, seen_tokens, log = st["step"], st["seen_tokens"], st["log"]
        rng.setstate(st["rng"])
        # A new stage restarts warmup + cosine here; an interrupted stage keeps the schedule it had.
        a.stage_start = step if a.restart_schedule else st.get("stage_start", 0)
        print(f"resumed from {src} at step {step}, schedule from step {a.stage_start}", flush=True)
    end_step = a.stage_start + a.steps

    def checkpoint():
        extra = {"args": vars(a), "step": step, "seen_tokens": seen_tokens, "parameters": n_params, "log": log}
        save_model(a.out, model, config, a.tokenizer, extra)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "seen_tokens": seen_tokens,
                    "log": log, "rng": rng.getstate(), "stage_start": a.stage_start}, state_path)

    # Length-sorted chunks keep padding low: draw a random sample, then fill the batch with neighbours.
    order = sorted(range(len(train)), key=lambda i: len(train[i][0]))
    start, win_t, win_tok, win_loss, win_ans = time.time(), time.time(), 0, 0.0, 0.0
    while step < end_step:
        if a.minutes and time.time() - start > a.minutes * 60:
            break
        if a.stop_step and step >= a.stop_step:
            break
        k = rng.randrange(len(order))
        L = len(train[order[k]][0])
        bs = max(1, a.batch_tokens // L)
        lo = max(0, min(k - bs // 2, len(order) - bs))
        batch = [train[i] for i in order[lo: lo + bs]]
        ids, pos, real, w = (t.to(dev, non_blocking=True) for t in make_batch(batch, rng, a))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a, time.time() - start)
        # Only positions with a loss weight matter: the last layer and the LM head run there alone.
        wl = w[:, :-1]
        cnt = (wl > 0).sum(1)
        S = int(cnt.max())
        order_w = torch.argsort((wl > 0).float(), dim=1, descending=True, stable=True)[:, :S]  # weighted first, in order
        keep = torch.arange(S, device=dev)[None] < cnt[:, None]
        sel = torch.where(keep, order_w, torch.zeros_like(order_w))
        with amp:
            logits = model(ids, pos, sel)
        ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids.gather(1, sel + 1).reshape(-1), reduction="none")
        wt = (wl.gather(1, sel) * keep).reshape(-1)
        ans = wt == 1.0
        loss = (ce * wt).sum() / wt.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen_tokens += int(real.sum())
        win_tok += int(real.sum())
        win_loss += float(loss)
        win_ans += float(ce[ans].mean())
        if step % a.log_every == 0:
            dt = time.time() - win_t
            rec = {"step": step, "loss": win_loss / a.log_every, "answer_loss": win_ans / a.log_every,
                   "tokens_per_s": win_tok / dt, "lr": lr_at(step, a, time.time() - start), "tokens": seen_tokens,
                   "minutes": (time.time() - start) / 60}
            log.append(rec)
            print(f"step {step} loss {rec['loss']:.3f} answer {rec['answer_loss']:.3f} {rec['tokens_per_s']:.0f} tok/s "
                  f"lr {rec['lr']:.2e} {rec['minutes']:.1f} min", flush=True)
            win_t, win_tok, win_loss, win_ans = time.time(), 0, 0.0, 0.0
        if held and step % a.eval_every == 0:
            with amp:
                tot, per = evaluate(model, held, tok)
            log.append({"step": step, "eval_exact": tot["exact"], "eval_token_acc": tot["token_acc"],
                        "eval_answer_loss": tot["answer_loss"], "eval_tasks": per})
            print(f"eval step {step}: exact {tot['exact']:.2f} token acc {tot['token_acc']:.2f} answer loss {tot['answer_loss']:.3f} | "
                  + " ".join(f"{t} {r['exact']:.2f}/{r['n']}" for t, r in per.items()), flush=True)
            win_t = time.time()
        if step % a.save_every == 0:
            checkpoint()
            win_t = time.time()
    checkpoint()
    if held:
        s = held[0]
        s0, s1 = s[1][0]
        out = greedy(model, s[0][:s0], tok.eos_id, 40)
        print(f"sample greedy: {tok.decode(out)!r} (reference {tok.decode(s[0][s0:s1 - 1])!r})", flush=True)
    print(f"done: {step} steps, {seen_tokens} tokens, {(time.time() - start) / 60:.1f} min -> {a.out}", flush=True)


if __name__ == "__main__":
    main()
