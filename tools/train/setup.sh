#!/bin/sh
# Installs the training stack: Debian's PyTorch 1.13 and OpenBLAS (without OpenBLAS, torch falls back
# to a reference BLAS at ~5 GFLOP/s). Use /usr/bin/python3 afterwards: Debian's torch lives in its
# dist-packages, which a pyenv or venv python does not see.
set -e
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y python3-torch libopenblas0-pthread
/usr/bin/python3 - <<'PY'
import time, torch
torch.set_num_threads(2)
a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
a @ b
t = time.time()
for _ in range(10): a @ b
print(f"torch {torch.__version__}: 1024^3 matmul {2 * 1024**3 * 10 / (time.time() - t) / 1e9:.0f} GFLOP/s on 2 threads")
PY
