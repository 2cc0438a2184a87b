#!/bin/sh
# The speed figures of docs/speed.md, each from one command, into OUT (default /tmp/rocketkv-speed):
#   model.json/.log   bench model at 1K, 4K and 16K beside llama.cpp, rocketkv@256 decoded beside full
#   decode-1k.log     bench decode at 1K: full-KV decode against its bandwidth roofline
#   decode-16k-rocketkv.log  bench decode: rocketkv@256 steps at 16K alternating with full-KV steps at 1K
#   kernels-*.log     bench kernels on each build: int8 and f32 GEMM, the instruction peaks
#   load-*.json       peak memory of loading the benchmark GGUF (q8) and SmolLM2 (q8, f32)
# Then: node --import tsx tools/speed/report.ts OUT > docs/speed.md
# The benchmark GGUF (random weights, Qwen2.5-0.5B's layer shapes, Q8_0) is written first if missing;
# it needs the gguf package (pip install -r tools/parity/requirements.txt) and SmolLM2's tokenizer
# (npm run fetch:smollm2). The 16K rounds take most of an hour on 2 cores. THREADS, ROUNDS (per length)
# and LENGTHS (prompt tokens) may be set in the environment.
set -eu
OUT=${1:-/tmp/rocketkv-speed}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
LENGTHS=${LENGTHS:-1024,4096,16384}
mkdir -p "$OUT"
cli() { node --import tsx test/helpers/rocketkv.ts "$@"; }
SMOL=$(node --import tsx -e "import('./test/helpers/smollm2.ts').then((m) => process.stdout.write(m.smollm2Path() ?? ''))")
[ -n "$SMOL" ] || { echo "SmolLM2 is not in the cache: npm run fetch:smollm2" >&2; exit 1; }
GGUF="$OUT/qwen-shape-q8_0.gguf"
[ -f "$GGUF" ] || python3 tools/bench/random_gguf.py --tokenizer-from "$SMOL" --out "$GGUF"
cli bench model --model "$GGUF" --prompt-tokens "$LENGTHS" --gen-tokens 32 --rounds "$ROUNDS" --threads "$THREADS" --beside rocketkv@256 --json "$OUT/model.json" | tee "$OUT/model.log"
cli bench decode --context 1024 --steps 200 --threads "$THREADS" | tee "$OUT/decode-1k.log"
cli bench decode --context 16384 --methods rocketkv --kv-budget 256 --reference-context 1024 --steps 100 --threads "$THREADS" | tee "$OUT/decode-16k-rocketkv.log"
for k in relaxed plain; do ROCKETKV_KERNELS=$k cli bench kernels --threads "$THREADS" | tee "$OUT/kernels-$k.log"; done
node --import tsx test/helpers/load-memory-child.ts "$GGUF" q8 > "$OUT/load-bench-q8.json"
node --import tsx test/helpers/load-memory-child.ts "$SMOL" q8 > "$OUT/load-smollm2-q8.json"
node --import tsx test/helpers/load-memory-child.ts "$SMOL" f32 > "$OUT/load-smollm2-f32.json"
echo "figures in $OUT; now: node --import tsx tools/speed/report.ts $OUT > docs/speed.md" >&2
