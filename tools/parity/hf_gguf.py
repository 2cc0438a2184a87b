"""Reference outputs of Hugging Face transformers for a GGUF file: token ids and last-position logits.

transformers dequantizes the GGUF (through the `gguf` package) into a float32 PyTorch model and
builds its tokenizer from the file's tokenizer.ggml.* metadata. Set up with
`pip install torch==2.13.0 transformers gguf`.

Usage: python3 tools/parity/hf_gguf.py REQUEST.json RESULT.json
REQUEST: {"gguf": path, "texts": [...], "prompts": [[ids...], ...], "topk": 5}
RESULT:  {"ids": [[...] per text], "logits": [{"top": [[id, logit] x topk], "file": path of f32 logits}]}
"""
import json
import os
import sys

import numpy as np


def main() -> None:
    req_path, out_path = sys.argv[1], sys.argv[2]
    with open(req_path) as f:
        req = json.load(f)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
    gguf = os.path.abspath(req["gguf"])
    folder, name = os.path.dirname(gguf), os.path.basename(gguf)
    result = {"ids": [], "logits": []}
    if req.get("texts"):
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        for text in req["texts"]:
            result["ids"].append(tok(text, add_special_tokens=False)["input_ids"])
    if req.get("prompts"):
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
        model.eval()
        out_dir = os.path.dirname(os.path.abspath(out_path))
        for i, ids in enumerate(req["prompts"]):
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0, -1].float().numpy()
            file = os.path.join(out_dir, f"logits{i}.f32")
            logits.astype(np.float32).tofile(file)
            top = np.argsort(-logits)[: req.get("topk", 5)]
            result["logits"].append({"top": [[int(t), float(logits[t])] for t in top], "file": file})
    with open(out_path + ".part", "w") as f:
        json.dump(result, f)
    os.replace(out_path + ".part", out_path)


if __name__ == "__main__":
    main()
