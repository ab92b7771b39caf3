#!/usr/bin/env bash
# bagmar on one CUDA GPU, in one script (budget: under 5 minutes on an H100-class GPU).
#
#  1. install bagmar without touching torch, torchvision or timm: `pip install --no-deps -e .`, then only the
#     pure-Python dependencies that do not import (typer, rich, pydantic, tomli-w, ...), each with --no-deps;
#     the torch version is checked unchanged afterwards;
#  2. benchmarks/throughput.py on the GPU: the five pipelines in fp32, then the bare step against bagmar's own
#     step (pipeline 5) in bf16 + channels-last, eager and compiled;
#  3. benchmarks/large_scale_gpu.py: the large-scale presets' backbones (ResNeXt-50, ResNet-50, ResNet-152) in
#     each freezing mode, and the CLIP ViT-B/16 presets' AdaptFormer stage, timed training steps at 224 px in
#     bf16 + channels-last beside the estimate in docs/large-scale.md;
#  4. benchmarks/finetune_gpu.py: the CLIP ViT-B/16 fine-tuning recipe's step (full fine-tuning, LoRA, AdaptFormer;
#     batch 128, bf16, 224 px): images/s, minutes an ImageNet-LT epoch, peak GPU memory;
#  5. 2 epochs of the real `cifar100_lt` recipe (`bagmar train`) on generated CIFAR-100-shaped data
#     (benchmarks/fake_cifar.py, then `bagmar prepare cifar100 --source`), default settings and then
#     bf16 + channels-last + compile, printing images/s of the second epoch and the projected wall time of the
#     200 epochs the recipe trains.
#
# Usage: benchmarks/gpu_check.sh [--device cuda|cpu] [--steps N] [--epochs N] [--no-install] [--work DIR]
#   --device cpu: the same steps on the CPU, compiled runs left out and the two trainings on ResNet-8 rather than
#                 the recipe's ResNet-32 (bf16 on a CPU without bf16 units took over 15 minutes an epoch); a dry
#                 run of the script, whose numbers mean nothing, e.g. in a test:
#                 benchmarks/gpu_check.sh --device cpu --steps 2 --epochs 1 --no-install
# PYTHON (default python3) is the interpreter that has torch. Without CUDA (and without --device cpu) it stops
# with one `Error:` line and exit code 1 before installing anything.
set -euo pipefail
log() { echo "== $*" >&2; }

DEVICE=cuda
STEPS=200
EPOCHS=2
INSTALL=1
WORK=""
PYTHON=${PYTHON:-python3}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --work) WORK=$2; shift 2 ;;
    *) echo "Error: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
if [[ "$DEVICE" != cuda && "$DEVICE" != cpu ]]; then
  echo "Error: --device $DEVICE: choose cuda or cpu" >&2; exit 2
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# one interpreter start: torch's version and the GPU's name, or why there is none
if ! FOUND=$("$PYTHON" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" 2>/dev/null); then
  echo "Error: $PYTHON cannot import torch; run on a machine with torch, torchvision and timm installed" >&2
  exit 1
fi
read -r TORCH_VERSION GPU_NAME <<< "$FOUND"
if [[ "$DEVICE" == cuda && -z "$GPU_NAME" ]]; then
  echo "Error: no CUDA device visible to torch $TORCH_VERSION; this check needs a GPU (--device cpu: a dry run)" >&2
  exit 1
fi
log "torch $TORCH_VERSION on ${GPU_NAME:-the CPU}"

if [[ "$INSTALL" == 1 ]]; then
  log "install bagmar (no dependencies resolved: torch, torchvision and timm stay as they are)"
  TORCH_BEFORE=$("$PYTHON" -c "import torch, torchvision, timm; print(torch.__version__, torchvision.__version__, timm.__version__)")
  "$PYTHON" -m pip install --quiet --no-deps -e .
  # module -> distribution, for the pure-Python dependencies (and theirs) a torch machine may lack
  for pair in typer:typer click:click rich:rich markdown_it:markdown-it-py mdurl:mdurl pygments:pygments \
      shellingham:shellingham typing_extensions:typing-extensions pydantic:pydantic pydantic_core:pydantic-core \
      annotated_types:annotated-types typing_inspection:typing-inspection tomli_w:tomli-w safetensors:safetensors; do
    module=${pair%%:*}; dist=${pair#*:}
    if ! "$PYTHON" -c "import $module" 2>/dev/null; then
      "$PYTHON" -m pip install --quiet --no-deps "$dist"
    fi
  done
  TORCH_AFTER=$("$PYTHON" -c "import torch, torchvision, timm; print(torch.__version__, torchvision.__version__, timm.__version__)")
  if [[ "$TORCH_BEFORE" != "$TORCH_AFTER" ]]; then
    echo "Error: the install changed torch/torchvision/timm ($TORCH_BEFORE -> $TORCH_AFTER)" >&2; exit 1
  fi
fi
"$PYTHON" -c "import bagmar_cli.cli" || { echo "Error: bagmar does not import (see above)" >&2; exit 1; }

WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
log "work directory $WORK"

log "throughput: five pipelines, fp32, eager"
"$PYTHON" benchmarks/throughput.py --device "$DEVICE" --steps "$STEPS" --warmup 10 --threads 4 > "$WORK/throughput_fp32.json"
log "throughput: bare step vs bagmar's step, bf16 + channels-last"
"$PYTHON" benchmarks/throughput.py --device "$DEVICE" --steps "$STEPS" --warmup 10 --threads 4 --only 1,5 \
  --precision bf16 --channels-last > "$WORK/throughput_bf16_cl.json"
if [[ "$DEVICE" == cuda ]]; then
  log "throughput: the same, compiled (compilation happens in the warm-up steps)"
  "$PYTHON" benchmarks/throughput.py --device "$DEVICE" --steps "$STEPS" --warmup 20 --threads 4 --only 1,5 \
    --precision bf16 --channels-last --compile > "$WORK/throughput_bf16_cl_compile.json"
fi

log "large-scale backbones: training steps, bf16 + channels-last, measured beside the estimate in docs/large-scale.md"
if [[ "$DEVICE" == cuda ]]; then
  "$PYTHON" benchmarks/large_scale_gpu.py --device cuda --batch 128 --steps 20 --warmup 5 --json \
    | tee "$WORK/large_scale_gpu.md"
else  # a dry run: 32-pixel images, one step each
  "$PYTHON" benchmarks/large_scale_gpu.py --device cpu --size 32 --batch 2 --steps 1 --warmup 0 --json \
    | tee "$WORK/large_scale_gpu.md"
fi

log "CLIP ViT-B/16 fine-tuning: full vs LoRA vs AdaptFormer, training steps in bf16 (ImageNet-LT epoch minutes)"
if [[ "$DEVICE" == cuda ]]; then
  "$PYTHON" benchmarks/finetune_gpu.py --device cuda --batch 128 --steps 20 --warmup 5 --json \
    | tee "$WORK/finetune_gpu.md"
else  # a dry run: timm's tiny test_vit, one step of 2 images each
  "$PYTHON" benchmarks/finetune_gpu.py --device cpu --backbone test_vit --classes 10 --batch 2 --steps 1 --warmup 0 \
    --json | tee "$WORK/finetune_gpu.md"
fi

log "CIFAR-100-shaped data (random pixels) -> bagmar prepare cifar100 (imb 100)"
"$PYTHON" benchmarks/fake_cifar.py "$WORK/source" > /dev/null
"$PYTHON" -m bagmar_cli prepare cifar100 --source "$WORK/source" --out "$WORK/cifar100-lt" --overwrite > /dev/null

train() {  # name, extra --set arguments...
  local name=$1; shift
  log "bagmar train: cifar100_lt, $EPOCHS epochs, $name"
  local start end
  start=$(date +%s.%N)
  "$PYTHON" -m bagmar_cli train --data "$WORK/cifar100-lt" --out "$WORK/run-$name" --epochs "$EPOCHS" \
    --device "$DEVICE" --overwrite "${DRY_RUN[@]}" "$@" > /dev/null
  end=$(date +%s.%N)
  "$PYTHON" - "$WORK/run-$name/metrics.jsonl" "$name" "$start" "$end" "$WORK/cifar100-lt" <<'EOF'
import json, sys
from bagmar_cli.data import load_manifest
path, name, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
images = sum(load_manifest(sys.argv[5]).splits["train"].counts)
records = [json.loads(line) for line in open(path)]
rate = records[-1]["images_per_s"]
per_epoch = (end - start) / len(records)
print(json.dumps({"train": name, "epochs": len(records), "images_per_s_last_epoch": round(rate, 1),
                  "projected_200_epochs_training_min": round(200 * images / rate / 60, 2),
                  "wall_s": round(end - start, 1),
                  "projected_200_epochs_with_validation_min_upper": round(200 * per_epoch / 60, 2)}))
EOF
}
DRY_RUN=()  # the CPU dry run trains a smaller network: its plumbing is what it checks
[[ "$DEVICE" == cuda ]] || DRY_RUN=(--set model.backbone=resnet8_cifar)
train default
if [[ "$DEVICE" == cuda ]]; then
  train bf16-cl-compile --set "train.precision='bf16'" --set train.channels_last=true --set train.compile=true
else
  train bf16-cl --set "train.precision='bf16'" --set train.channels_last=true
fi

log "throughput summaries (images/s)"
for file in "$WORK"/throughput_*.json; do
  "$PYTHON" -c "import json, sys; r = json.load(open(sys.argv[1])); print(sys.argv[1].rsplit('/', 1)[-1], json.dumps({p['name']: p['images_per_s'] for p in r['pipelines']}))" "$file"
done
