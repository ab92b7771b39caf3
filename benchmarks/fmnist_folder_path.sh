#!/bin/bash
# The image-file path on real data (issue 13): Fashion-MNIST-LT (imb 100, the fashion_mnist_lt preset's settings)
# written as PNG folders (file names: the zero-padded original index), prepared with `prepare folder --imb 100
# --seed S`, trained with the fashion_mnist_lt recipe, against `prepare fashion_mnist --imb 100 --seed S` in memory;
# seeds 0, 1, 2 (the seed both of the long-tail selection and of training). The training and test counts of the two
# manifests are checked equal before training.
# Run: OMP_NUM_THREADS=1 BAGMAR=.venv/bin/bagmar PYTHON=.venv/bin/python benchmarks/fmnist_folder_path.sh [WORKDIR]
# Needs /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist) or the IDX files in
# $BAGMAR_DATA_DIR/downloads. Folder-path settings, the closest to the recipe: `--image-size 28 --eval-resize 28`
# (evaluation sees the 28x28 images as they are, grey as RGB), `--measure-stats` (mean/std measured on the training
# images, where the in-memory manifest records Fashion-MNIST's 0.2860/0.3530), hflip off as the preset; the random
# crop is a RandomResizedCrop keeping at least 85 % of an image (data.crop_scale_min = 0.85: the in-memory recipe's
# 2-pixel pad-and-crop keeps at least 26x26 of 28x28, 86 %), aspect 3/4 to 4/3, where memory shifts without scaling.
# Since issue 24 a folder prepared by bagmar records its images' size, and small ones (<= 64 px) train with the
# in-memory recipe's pad-and-crop: data.crop_scale_min below no longer applies to them. The results in
# benchmarks/results/fmnist_folder_path.txt were taken before; benchmarks/folder_vs_memory.py is the comparison now.
set -e
absolute() { local found; found=$(command -v "$1"); echo "$(cd "$(dirname "$found")" && pwd)/$(basename "$found")"; }
B=$(absolute "${BAGMAR:-bagmar}")  # absolute, not resolved: a venv's python is a link that must stay one
PY=$(absolute "${PYTHON:-python}")
WORK=${1:-/tmp/bagmar-fmnist-folder}; mkdir -p "$WORK"; cd "$WORK"
export OMP_NUM_THREADS=1
SEEDS=${SEEDS:-0 1 2}
rm -f results.txt times.txt log.txt
if [ ! -f pngs/.complete ]; then
  rm -rf pngs
  $PY - <<'PY'
from pathlib import Path
from PIL import Image
from bagmar_cli.data.sources.fashion_mnist import CLASSES, load_fashion_mnist
data = load_fashion_mnist(None)
for split, images, labels in (("train", data.train_images, data.train_labels), ("test", data.test_images, data.test_labels)):
    for index, (image, label) in enumerate(zip(images, labels.tolist())):
        folder = Path("pngs") / split / f"{label}_{CLASSES[label].replace('/', '-')}"  # sorts in label order
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0]).save(folder / f"{index:05d}.png")
Path("pngs/.complete").touch()
PY
fi
for seed in $SEEDS; do
  $B prepare fashion_mnist --imb 100 --seed $seed --out mem-$seed --overwrite 2>/dev/null >/dev/null
  $B prepare folder --root pngs --imb 100 --seed $seed --image-size 28 --eval-resize 28 --measure-stats \
    --out folder-$seed --overwrite 2>>log.txt >/dev/null
  $PY - $seed <<'PY'
import sys
from bagmar_cli.data import load_manifest
mem, folder = load_manifest(f"mem-{sys.argv[1]}"), load_manifest(f"folder-{sys.argv[1]}")
for split in ("train", "test"):
    assert mem.splits[split].counts == folder.splits[split].counts, (split, mem.splits[split].counts, folder.splits[split].counts)
print(f"seed {sys.argv[1]}: train counts {folder.splits['train'].counts} equal in memory and as folders", file=sys.stderr)
PY
done
for seed in $SEEDS; do
  for kind in mem folder; do  # times.txt: path, seed, seconds of training (1 thread)
    extra=""
    [ $kind = folder ] && extra="--set data.crop_scale_min=0.85 --set data.num_workers=0"
    start=$(date +%s)
    $B train --data $kind-$seed --preset fashion_mnist_lt --seed $seed --device cpu --out runs/$kind-$seed --overwrite \
      $extra 2>>log.txt >/dev/null
    echo "$kind $seed $(( $(date +%s) - start ))" >> times.txt
  done
done
# results.txt: path, seed, test top-1, many-shot, medium-shot, the smallest class (60 training images): imb 100 over
# 10 classes leaves none below 20 images, so there is no few-shot group
for seed in $SEEDS; do
  for kind in mem folder; do
    $B eval runs/$kind-$seed/best.safetensors --split test --json --no-plots --tau none --device cpu 2>/dev/null \
      | $PY -c "import json,sys; r=json.load(sys.stdin); print('$kind', $seed, r['top1'], r['many'], r['medium'], r['per_class'][-1])" \
      >> results.txt
  done
done
cat results.txt times.txt
