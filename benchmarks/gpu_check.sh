#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA GPU (about 5-8 minutes on one GPU):
#   1. the GPU tests (train and evaluate on the GPU; torchrun over NCCL, DDP when there are >= 2 GPUs);
#   2. imgclf end to end against model-only throughput on the same GPU (resnet18 at 224 px, bf16,
#      channels_last; and the default FastNet at 32 px), one seed, 2 epochs.
# Results: benchmarks/.work/results/gpu_check.json (and stdout). Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
make install >/dev/null
BIN=.venv/bin
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$BIN/python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
$BIN/python -m pytest -q -p no:cacheprovider tests/test_gpu.py
mkdir -p benchmarks/.work/results
$BIN/python benchmarks/bench_train.py --sizes 224 --no-plain --tta-seeds '' --seeds 0 --epochs 2 \
    > benchmarks/.work/results/gpu_check.json
$BIN/python benchmarks/bench_train.py --model fastnet_s --sizes 32 --no-plain --tta-seeds '' --seeds 0 --epochs 2 \
    > benchmarks/.work/results/gpu_check_fastnet.json
$BIN/python - <<'PY'
import json
for name in ("gpu_check", "gpu_check_fastnet"):
    res = json.load(open(f"benchmarks/.work/results/{name}.json"))
    for s in res["same_settings"]:
        print(f"{s['model']} {s['img_size']} px: end to end {s['imgclf']['train_img_per_s']} img/s, model-only "
              f"{s['model_only']['img_per_s']} img/s ({s['model_only']['runtime']}): "
              f"{100 * s['end_to_end_vs_model_only']:.0f}%")
PY
