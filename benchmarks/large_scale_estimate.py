"""Estimated wall time per epoch of the large-scale presets on one GPU, from what a CPU-only machine can measure.

Measured here, per backbone built by bagmar (`build_model`: timm backbone + our head for the preset's classes; the
CLIP ViT-B/16 fine-tuning presets' model with its AdaptFormer adapters, trainable as training sets them):

1. FLOPs of one training step per image at 224x224, forward + backward, counted by torch's `FlopCounterMode` (convs
   and matmuls, 2 FLOPs per multiply-add; elementwise ops, BatchNorm and the optimiser step are not counted), for
   each freezing mode the presets use: "none" (stage 1, everything learns), "all_but_last_stage" (Places-LT's
   fine-tuning) and "backbone" (stage 2, classifier re-training: the frozen backbone runs forward only). torch's
   formula for a grouped convolution's weight gradient overcounts by the group count (pytorch/pytorch PR #183405);
   it is corrected here, which matters for ResNeXt's 32 groups. The CPU's fused attention kernel
   (`_scaled_dot_product_flash_attention_for_cpu`) is counted with torch's formula for the GPU's flash attention.
2. The CPU data path per worker: bagmar's `ImageListDataset` + `image_train_transform` (RandomResizedCrop 224, flip,
   ColorJitter 0.4; also with RandAugment rand-n2-m10-mstd0.5) on generated JPEGs of each dataset's typical size,
   in this process with one torch thread: images per CPU-second (what one worker on its own core does) and per
   wall-second. Not included: moving samples from worker to trainer (about 0.6 ms an image in float32, see
   `benchmarks/loader.py`'s results).
3. A CPU training step (SGD, batch `--batch`, 224 px) per backbone and mode: images/s and the GFLOP/s achieved,
   so that the FLOP count and the measured time can be compared.
4. For the fine-tuning presets, the bytes autograd keeps for the backward of one training step under bf16 autocast
   (storages counted once, parameters apart), at batch 1 and 2: per image and per batch. With the parameters
   (fp32), their gradients and SGD's momentum (fp32, trainable ones only) that estimates the GPU memory at the
   recipe's batch (CUDA's context, cuBLAS workspaces and the allocator's slack are not counted).

Estimated from them: per preset and stage, images per epoch (the train split; class-aware sampling draws
len(train) images an epoch as well), GPU compute seconds = images x FLOPs/image / sustained FLOP/s, where the
sustained rate is calibrated on NVIDIA's published ResNet-50 training throughput on one A100 (and scaled to an
H100 SXM by memory bandwidth), loader seconds = images / (per-worker rate x workers), and the epoch = the larger
of the two. Markdown on stdout, progress on stderr.

    OMP_NUM_THREADS=1 python benchmarks/large_scale_estimate.py --threads 1 [--files 48] [--steps 2] [--batch 2]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, sdpa_backward_flop_count, sdpa_flop_count

from bagmar_cli.console import err, info, result
from bagmar_cli.data.augment.images import image_train_transform
from bagmar_cli.data.images import EvalPreprocess, ImageListDataset, collate_skipping
from bagmar_cli.errors import BagmarError
from bagmar_cli.files import atomic_write
from bagmar_cli.models import Classifier, build_model
from bagmar_cli.models.freeze import freeze, train_only
from bagmar_cli.settings import DataSettings, ModelSettings

CROP = 224
JITTER = DataSettings(color_jitter=0.4)  # RandomResizedCrop (scale 0.08-1), flip, ColorJitter 0.4
FINETUNE_DATA = DataSettings(color_jitter=0.0)  # the CLIP presets (LIFT's): RandomResizedCrop (0.08-1) and flip only
RANDAUGMENT = "rand-n2-m10-mstd0.5"  # the authors' RandAugment, measured beside the recipe as a variant
NOISE_SIGMA = 20.0  # pixel noise of the generated JPEGs (std, on 0-255): file sizes like photos', not like noise

# The calibration: NVIDIA DeepLearningExamples, PyTorch ResNet50 v1.5 README, "Training performance: NVIDIA DGX A100
# (8x A100 80GB)", 1 GPU, mixed precision (AMP, pytorch-21.03 NGC container): 2470 img/s.
A100_RESNET50_IMAGES_PER_S = 2470.0
A100_SOURCE = (
    "NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5 README, training performance on "
    "DGX A100: 1x A100 80GB, mixed precision, 2470 img/s (pytorch-21.03 NGC container, 100-iteration benchmark run, "
    "default data backend DALI on the CPU)"
)
A100_BF16_PEAK, H100_BF16_PEAK = 312e12, 989e12  # dense tensor-core FLOP/s (NVIDIA's datasheets, SXM parts)
A100_BANDWIDTH, H100_BANDWIDTH = 2.039e12, 3.35e12  # HBM bytes/s: A100 80GB SXM, H100 SXM (datasheets)


@dataclass(frozen=True)
class Stage:
    """One training stage of a preset: its name, the `model.freeze` it trains with and its `model.peft`."""

    name: str
    freeze: str
    peft: str = "none"


@dataclass(frozen=True)
class Preset:
    """A large-scale preset as the estimate needs it: backbone, classes, train images and typical JPEG size."""

    name: str
    backbone: str
    classes: int
    train_images: int
    jpeg: tuple[int, int]  # (width, height) of a typical image of the dataset
    stages: tuple[Stage, ...]
    batch: int | None = None  # the recipe's batch, where the estimate gives its GPU memory (the fine-tuning presets)


TWO_STAGES = (Stage("stage 1 (all)", "none"), Stage("stage 2 (head)", "backbone"))
CLIP = "vit_base_patch16_clip_224.openai"
ADAPTFORMER = Stage("fine-tune (AdaptFormer + head)", "none", "adaptformer")
PRESETS = (
    Preset("imagenet_lt", "resnext50_32x4d", 1000, 115_846, (400, 350), TWO_STAGES),
    Preset("imagenet_lt (ResNet-50)", "resnet50", 1000, 115_846, (400, 350), TWO_STAGES),
    Preset("inat2018", "resnet50", 8142, 437_513, (800, 600), TWO_STAGES),
    # ImageNet-pretrained ResNet-152, last stage + head fine-tuned (OLTR / decoupling); Places365 ships 256x256 JPEGs
    Preset(
        "places_lt",
        "resnet152",
        365,
        62_500,
        (256, 256),
        (Stage("fine-tune (last stage + head)", "all_but_last_stage"), Stage("stage 2 (head)", "backbone")),
    ),
    # CLIP ViT-B/16 + AdaptFormer, batch 128 (LIFT's recipe: presets/*_clip_vitb16.toml); 20 epochs for iNaturalist
    *(
        Preset(f"{name}_clip_vitb16", CLIP, classes, images, jpeg, (ADAPTFORMER,), batch=128)
        for name, classes, images, jpeg in (
            ("imagenet_lt", 1000, 115_846, (400, 350)),
            ("inat2018", 8142, 437_513, (800, 600)),
            ("places_lt", 365, 62_500, (256, 256)),
        )
    ),
)


@dataclass
class Calibration:
    """Sustained training FLOP/s of one GPU: NVIDIA's measured ResNet-50 images/s x our FLOPs per image."""

    resnet50_flops_per_image: float
    a100_images_per_s: float = A100_RESNET50_IMAGES_PER_S
    source: str = A100_SOURCE
    h100_scale: float = H100_BANDWIDTH / A100_BANDWIDTH  # ResNet training is memory-bound: scale by bandwidth
    a100_flops_per_s: float = field(init=False)
    a100_utilisation: float = field(init=False)

    def __post_init__(self) -> None:
        self.a100_flops_per_s = self.a100_images_per_s * self.resnet50_flops_per_image
        self.a100_utilisation = self.a100_flops_per_s / A100_BF16_PEAK

    def seconds(self, flops: float, gpu: str) -> float:
        """GPU compute seconds for `flops` on "A100" or "H100" at the calibrated sustained rate."""
        return flops / (self.a100_flops_per_s * (self.h100_scale if gpu == "H100" else 1.0))


# --- FLOPs -------------------------------------------------------------------------------------------------------


def conv_backward_flop(
    grad_out_shape: Sequence[int],
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    _groups: int,
    output_mask: Sequence[bool],
    out_shape: Sequence[Any],
    **kwargs: Any,
) -> int:
    """FLOPs of a convolution's backward: each gradient asked for costs what the forward does (groups included).

    torch's own formula counts the weight gradient through transposed shapes that lose the group division.
    """
    forward: int = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def cpu_attention_flop(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int],
                       *args: Any, **kwargs: Any) -> int:  # fmt: skip
    """FLOPs of the CPU's fused attention: what torch counts for flash attention on a GPU."""
    return int(sdpa_flop_count(query_shape, key_shape, value_shape))


def cpu_attention_backward_flop(grad_out_shape: Sequence[int], query_shape: Sequence[int], key_shape: Sequence[int],
                                value_shape: Sequence[int], *args: Any, **kwargs: Any) -> int:  # fmt: skip
    return int(sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape))


COUNTING = {
    torch.ops.aten.convolution_backward: conv_backward_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: cpu_attention_backward_flop,
}


def build(backbone: str, classes: int, mode: str, peft: str = "none") -> Classifier:
    """bagmar's model for `backbone` with `classes` outputs, frozen as `mode` says, in training mode (frozen
    BatchNorms in eval mode, as the trainer keeps them). With a `peft` adapter: the fine-tuning presets' model
    (cosine head on CLIP's projected features), trainable as training sets it."""
    if peft != "none":
        settings = ModelSettings(backbone=backbone, peft=peft, head="normed", features="projected")  # type: ignore[arg-type]
        model = build_model(settings, classes, 3).train()
        train_only(model, settings)
        return model
    model = build_model(ModelSettings(backbone=backbone, freeze=mode), classes, 3).train()  # type: ignore[arg-type]
    for norm in freeze(model, mode):
        norm.eval()
    return model


def train_step(model: nn.Module, images: Tensor, labels: Tensor, optimizer: torch.optim.Optimizer | None) -> None:
    """Forward, cross-entropy, backward (and the optimiser's step when given)."""
    loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    if optimizer is not None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def batch_of(n: int, size: int, classes: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=generator)
    return images, torch.randint(classes, (n,), generator=generator)


def step_flops(model: nn.Module, size: int, classes: int, batch: int = 2) -> float:
    """Counted FLOPs of one training step (forward + backward) per image at `size` x `size`."""
    images, labels = batch_of(batch, size, classes)
    with FlopCounterMode(display=False, custom_mapping=COUNTING) as counter:
        train_step(model, images, labels, None)
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def saved_bytes(model: nn.Module, size: int, classes: int, batch: int) -> int:
    """Bytes of the tensors autograd keeps for the backward of one bf16-autocast training step of `batch` images:
    each storage once, the parameters' own storages left out (they are counted as weights)."""
    images, labels = batch_of(batch, size, classes)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(images)
        loss = nn.functional.cross_entropy(logits.float(), labels)
    loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
    model.zero_grad(set_to_none=True)
    return sum(saved.values())


def memory_estimate(model: nn.Module, size: int, classes: int, batch: int) -> dict[str, float]:
    """GPU memory of a bf16 training step at `batch`, estimated: saved activations (per image, from batches of 1
    and 2, and per batch: bf16 copies of frozen weights) + fp32 weights + gradient and momentum of trainable ones."""
    one, two = saved_bytes(model, size, classes, 1), saved_bytes(model, size, classes, 2)
    total, trainable = parameters(model)
    weights, optimiser = 4 * total, 2 * 4 * trainable
    activations = one + (two - one) * (batch - 1)
    return {
        "saved_mb_per_image": (two - one) / 1e6, "saved_mb_per_batch": (2 * one - two) / 1e6,
        "weights_gb": weights / 1e9, "gradients_and_momentum_gb": optimiser / 1e9, "batch": batch,
        "activations_gb": activations / 1e9, "total_gib": (weights + optimiser + activations) / 2**30,
    }  # fmt: skip


def parameters(model: nn.Module) -> tuple[int, int]:
    """(all, trainable) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def cpu_step(model: nn.Module, size: int, classes: int, batch: int, steps: int) -> tuple[float, float]:
    """(images per wall-second, images per CPU-second) of SGD training steps on this CPU; one untimed step first."""
    images, labels = batch_of(batch, size, classes)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    train_step(model, images, labels, optimizer)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        train_step(model, images, labels, optimizer)
    return batch * steps / (time.perf_counter() - wall), batch * steps / (time.process_time() - cpu)


def measure_model(
    backbone: str, classes: int, mode: str, *, size: int, batch: int, steps: int, peft: str = "none",
    memory_batch: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """FLOPs per image, parameters, (`steps` > 0) the CPU training rate of one backbone and freezing mode (and
    adapter), and (`memory_batch`) the estimated GPU memory of a bf16 step at that batch."""
    torch.manual_seed(0)
    model = build(backbone, classes, mode, peft)
    flops = step_flops(model, size, classes)
    total, trainable = parameters(model)
    row = {"backbone": backbone, "classes": classes, "freeze": mode, "peft": peft, "size": size}
    row["gflops_per_image"] = flops / 1e9
    if memory_batch is not None:
        row["memory"] = memory_estimate(model, size, classes, memory_batch)
    row |= {"parameters": total, "trainable_parameters": trainable}
    if steps > 0:
        wall_rate, cpu_rate = cpu_step(model, size, classes, batch, steps)
        row |= {"cpu_batch": batch, "cpu_steps": steps, "cpu_images_per_s": wall_rate}
        row |= {"cpu_images_per_cpu_s": cpu_rate, "cpu_gflops_per_s": wall_rate * flops / 1e9}
        row["cpu_gflops_per_cpu_s"] = cpu_rate * flops / 1e9
    return row


# --- data path ---------------------------------------------------------------------------------------------------


def photo_like(width: int, height: int, rng: np.random.Generator, sigma: float = NOISE_SIGMA) -> Image.Image:
    """A smooth colour gradient with coarse and finer colour fields and pixel noise: compresses like a photo."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height)[..., None]
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    gradient = start + (end - start) * (0.5 * ramp + 0.25)

    def field(rows: int, cols: int) -> np.ndarray:
        cells = Image.fromarray(rng.integers(0, 256, (rows, cols, 3), dtype=np.uint8))
        return np.asarray(cells.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)

    pixels = 0.5 * gradient + 0.35 * field(5, 7) + 0.15 * field(max(1, height // 8), max(1, width // 8))
    pixels += rng.normal(0, sigma, (height, width, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def write_jpegs(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> tuple[list[str], float]:
    """`n` photo-like JPEGs (quality 90) of `size` in `folder`: their names and mean file size in bytes."""
    rng = np.random.default_rng(seed)
    names = [f"{size[0]}x{size[1]}_{i:04d}.jpg" for i in range(n)]
    for name in names:
        photo_like(*size, rng).save(folder / name, quality=90)
    return names, statistics.fmean((folder / name).stat().st_size for name in names)


def loader_rate(root: Path, names: list[str], transform: Callable[[Image.Image], Any], rounds: int) -> dict[str, float]:
    """Decoded + augmented images per CPU-second and per wall-second of `ImageListDataset` in this process, batches
    of 32 collated as the trainer's DataLoader does; the best of `rounds` passes (after one untimed image)."""
    dataset = ImageListDataset(root, names, [0] * len(names), transform)
    dataset[0]
    per_cpu, per_wall = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(dataset), 32):
            batch = collate_skipping([dataset[i] for i in range(start, min(start + 32, len(dataset)))])
            if batch.failed:
                raise RuntimeError(f"generated JPEG failed to decode: {batch.failed[0]}")
        per_cpu.append(len(dataset) / (time.process_time() - cpu))
        per_wall.append(len(dataset) / (time.perf_counter() - wall))
    return {"images_per_cpu_s": max(per_cpu), "images_per_s": max(per_wall)}


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows: per-core rates depend on it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def worker_rate(root: Path, names: list[str], transform: Callable[[Image.Image], Any], rounds: int) -> dict[str, float]:
    """Images per CPU-second of one DataLoader worker process (one thread; decode, augment, collate and hand the
    batch to the queue, as in training) and per wall-second of the loader; the best of `rounds` timed passes after
    an untimed one that starts the worker."""
    dataset = ImageListDataset(root, names, [0] * len(names), transform)
    loader = DataLoader(
        dataset, batch_size=32, num_workers=1, collate_fn=collate_skipping, persistent_workers=True,
        worker_init_fn=_one_thread,
    )  # fmt: skip
    for _ in loader:
        pass
    per_cpu, per_wall = [], []
    for _ in range(rounds):
        iterator = iter(loader)
        pid = iterator._workers[0].pid  # type: ignore[attr-defined]  # the persistent worker of the untimed pass
        cpu, wall = _cpu_seconds(pid), time.perf_counter()
        images = sum(len(batch.images) for batch in iterator)
        per_cpu.append(images / max(_cpu_seconds(pid) - cpu, 1 / os.sysconf("SC_CLK_TCK")))
        per_wall.append(images / (time.perf_counter() - wall))
    return {"images_per_cpu_s": max(per_cpu), "images_per_s": max(per_wall)}


def measure_data_path(
    jpeg: tuple[int, int], files: int, rounds: int, crop: int = CROP, finetune: bool = False
) -> dict[str, Any]:
    """Per-worker rates of the training transform (to `crop` pixels) with and without RandAugment on `files`
    JPEGs of size `jpeg`; with `finetune`, also one worker's rate with the fine-tuning presets' crop and flip."""
    with tempfile.TemporaryDirectory(prefix="bagmar-estimate-") as tmp:
        names, mean_bytes = write_jpegs(Path(tmp), files, jpeg)
        row: dict[str, Any] = {"jpeg": list(jpeg), "files": files, "mean_file_kb": mean_bytes / 1e3, "crop": crop}
        preprocess = EvalPreprocess(resize=max(crop, 256), crop=crop)
        jitter = image_train_transform(JITTER, preprocess)
        randaugment = image_train_transform(JITTER.model_copy(update={"randaugment": RANDAUGMENT}), preprocess)
        row["worker"] = worker_rate(Path(tmp), names, randaugment, rounds)  # the presets' pipeline
        if finetune:
            crop_flip = image_train_transform(FINETUNE_DATA, preprocess)
            row["worker_finetune"] = worker_rate(Path(tmp), names, crop_flip, rounds)
        row["recipe"] = loader_rate(Path(tmp), names, jitter, rounds)
        row["with_randaugment"] = loader_rate(Path(tmp), names, randaugment, rounds)
    return row


# --- the estimate ------------------------------------------------------------------------------------------------


def estimate(
    presets: Sequence[Preset],
    models: dict[tuple[str, int, str, str], dict[str, Any]],
    data: dict[tuple[int, int], dict[str, Any]],
    calibration: Calibration,
    workers: Sequence[int],
) -> list[dict[str, Any]]:
    """Per preset and stage: images, GFLOPs/image, GPU seconds (A100, H100), loader seconds per worker count, and
    the epoch in minutes (the larger of compute and loading) per GPU and worker count."""
    rows = []
    for preset in presets:
        for stage in preset.stages:
            rate = data[preset.jpeg][_pipeline(stage)]["images_per_cpu_s"]
            model = models[(preset.backbone, preset.classes, stage.freeze, stage.peft)]
            flops = model["gflops_per_image"] * 1e9
            gpu = {name: calibration.seconds(preset.train_images * flops, name) for name in ("A100", "H100")}
            loader = {n: preset.train_images / (rate * n) for n in workers}
            rows.append(
                {
                    "preset": preset.name, "stage": stage.name, "freeze": stage.freeze, "backbone": preset.backbone,
                    "images_per_epoch": preset.train_images, "jpeg": list(preset.jpeg), "gflops_per_image": flops / 1e9,
                    "gpu_s": gpu, "loader_s": {str(n): s for n, s in loader.items()},
                    "wall_min": {g: {str(n): max(gpu[g], loader[n]) / 60 for n in workers} for g in gpu},
                    "peft": stage.peft, "gpu_memory_gib": model.get("memory", {}).get("total_gib"),
                    "batch": preset.batch,
                }
            )  # fmt: skip
    return rows


def _pipeline(stage: Stage) -> str:
    """The data path row's key for the stage's augmentation: the fine-tuning presets' or the others'."""
    return "worker" if stage.peft == "none" else "worker_finetune"


def run(
    presets: Sequence[Preset],
    *,
    files: int,
    rounds: int,
    batch: int,
    steps: int,
    workers: Sequence[int],
    size: int = CROP,
) -> dict[str, Any]:
    """Measure every backbone/freezing mode and JPEG size the presets need at `size` pixels, then estimate each
    preset's epochs (the calibration's ResNet-50 is always counted at 224 pixels, as NVIDIA measured it)."""
    load_before = os.getloadavg()
    models = {}
    memory = {(p.backbone, p.classes, s.freeze, s.peft): p.batch for p in presets for s in p.stages if p.batch}
    for key in sorted({(p.backbone, p.classes, s.freeze, s.peft) for p in presets for s in p.stages}):
        backbone, classes, mode, peft = key
        adapter = "" if peft == "none" else f", {peft}"
        info(f"{backbone} ({classes} classes), freeze {mode}{adapter}: counting FLOPs, timing {steps} CPU steps")
        models[key] = measure_model(
            backbone, classes, mode, size=size, batch=batch, steps=steps, peft=peft, memory_batch=memory.get(key)
        )
    reference = models.get(("resnet50", 1000, "none", "none")) if size == CROP else None
    if reference is None:
        info("resnet50 (1000 classes), freeze none at 224 px: counting FLOPs for the calibration")
        reference = measure_model("resnet50", 1000, "none", size=CROP, batch=batch, steps=0)
    data = {}
    for jpeg in sorted({p.jpeg for p in presets}):
        info(f"data path: {files} JPEGs {jpeg[0]}x{jpeg[1]}, best of {rounds} passes")
        finetune = any(s.peft != "none" for p in presets if p.jpeg == jpeg for s in p.stages)
        data[jpeg] = measure_data_path(jpeg, files, rounds, size, finetune)
    calibration = Calibration(reference["gflops_per_image"] * 1e9)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__, "timm": timm.__version__, "cpu": cpu_model(),
        "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cores": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()], "workers": list(workers), "size": size,
        "calibration": asdict(calibration),
        "models": list(models.values()),
        "data_path": list(data.values()),
        "estimate": estimate(presets, models, data, calibration, workers),
    }  # fmt: skip


# --- markdown ----------------------------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> list[str]:
    """A markdown table; columns from `right` on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    return [f"| {' | '.join(line)} |" for line in (header, align, *rows)]


def _slash(values: Sequence[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def render(report: dict[str, Any]) -> list[str]:
    """The report as markdown lines: conditions, the estimate table, assumptions, then the measurements."""
    cal, workers = report["calibration"], report["workers"]
    w = " / ".join(str(n) for n in workers)
    load = report["load_average_before"][0], report["load_average_after"][0]
    lines = [
        "# Large-scale presets: estimated GPU wall time per epoch",
        "",
        f"Measured {report['date']} with torch {report['torch']}, timm {report['timm']}, on {report['cores']} CPU "
        f"cores ({report['cpu']}), **torch threads {report['threads']}** (OMP_NUM_THREADS={report['omp_num_threads']}),"
        f" load average {load[0]} -> {load[1]} (a machine shared with other work: CPU-second rates are what carry "
        "over, wall-clock rates are lower bounds). No GPU was used: **every GPU and wall time below is an estimate**, "
        "not a measurement.",
        "",
        f"`{report.get('command', '(functions called directly)')}`",
        "",
        "## Estimate per epoch (one GPU)",
        "",
    ]
    header = ["preset", "stage", "backbone", "images/epoch", "GFLOPs/img", "GPU s/epoch A100 / H100",
              f"loader s/epoch {w} workers", f"est. wall min/epoch A100, {w} workers",
              f"est. wall min/epoch H100, {w} workers", "est. GPU memory GiB (batch)"]  # fmt: skip
    rows = [
        [r["preset"], r["stage"], r["backbone"], f"{r['images_per_epoch']:,}", f"{r['gflops_per_image']:.1f}",
         _slash(r["gpu_s"].values(), ".0f"), _slash(r["loader_s"].values(), ".0f"),
         _slash(r["wall_min"]["A100"].values(), ".1f"), _slash(r["wall_min"]["H100"].values(), ".1f"),
         "–" if r.get("gpu_memory_gib") is None else f"{r['gpu_memory_gib']:.1f} ({r['batch']})"]
        for r in report["estimate"]
    ]  # fmt: skip
    lines += markdown_table(header, rows, right=3)
    lines += ["", "## Assumptions", "", *assumptions(report)]
    lines += ["", "## Measured: FLOPs, parameters and a CPU training step", ""]
    header = ["backbone", "classes", "freeze", "GFLOPs/img (fwd+bwd)", "params (M)", "trainable (M)",
              "CPU img/s", "CPU img/CPU-s", "GFLOP/CPU-s"]  # fmt: skip
    rows = [
        [m["backbone"], str(m["classes"]), _mode(m), f"{m['gflops_per_image']:.2f}", f"{m['parameters'] / 1e6:.1f}",
         f"{m['trainable_parameters'] / 1e6:.2f}", f"{m.get('cpu_images_per_s', 0):.2f}",
         f"{m.get('cpu_images_per_cpu_s', 0):.2f}", f"{m.get('cpu_gflops_per_cpu_s', 0):.0f}"]
        for m in report["models"]
    ]  # fmt: skip
    lines += markdown_table(header, rows, right=3)
    memory = [m for m in report["models"] if "memory" in m]
    if memory:
        lines += ["", "## Measured: what a bf16 training step keeps for backward (the GPU memory estimate)", ""]
        header = ["backbone", "classes", "freeze", "saved MB/img", "saved MB/batch", "weights GB (fp32)",
                  "grad + momentum GB", "batch", "activations GB", "est. total GiB"]  # fmt: skip
        rows = [
            [m["backbone"], str(m["classes"]), _mode(m), f"{m['memory']['saved_mb_per_image']:.1f}",
             f"{m['memory']['saved_mb_per_batch']:.0f}", f"{m['memory']['weights_gb']:.2f}",
             f"{m['memory']['gradients_and_momentum_gb']:.3f}", str(m["memory"]["batch"]),
             f"{m['memory']['activations_gb']:.1f}", f"{m['memory']['total_gib']:.1f}"]
            for m in memory
        ]  # fmt: skip
        lines += markdown_table(header, rows, right=3)
    lines += ["", "## Measured: the data path per worker (one process, one thread)", ""]
    header = ["JPEGs", "files", "mean file KB", "1 worker process, the presets' pipeline: img/CPU-s", "img/s",
              "in process: img/CPU-s", f"in process + RandAugment {RANDAUGMENT}: img/CPU-s",
              "1 worker process, fine-tuning crop + flip: img/CPU-s"]  # fmt: skip
    rows = [
        [f"{d['jpeg'][0]}x{d['jpeg'][1]}", str(d["files"]), f"{d['mean_file_kb']:.0f}",
         f"{d['worker']['images_per_cpu_s']:.0f}", f"{d['worker']['images_per_s']:.0f}",
         f"{d['recipe']['images_per_cpu_s']:.0f}", f"{d['with_randaugment']['images_per_cpu_s']:.0f}",
         f"{d['worker_finetune']['images_per_cpu_s']:.0f}" if "worker_finetune" in d else "–"]
        for d in report["data_path"]
    ]  # fmt: skip
    lines += markdown_table(header, rows, right=1)
    lines += [
        "",
        f"Calibration: ResNet-50 at {cal['resnet50_flops_per_image'] / 1e9:.1f} GFLOPs/img (counted) x "
        f"{cal['a100_images_per_s']:.0f} img/s = {cal['a100_flops_per_s'] / 1e12:.1f} TFLOP/s sustained on an A100 "
        f"({100 * cal['a100_utilisation']:.0f} % of its {A100_BF16_PEAK / 1e12:.0f} TFLOP/s bf16 peak).",
    ]
    return lines


def _mode(model: dict[str, Any]) -> str:
    """The freezing mode, with the adapter where there is one."""
    peft = model.get("peft", "none")
    return model["freeze"] if peft == "none" else f"{model['freeze']} + {peft} (base frozen)"


def assumptions(report: dict[str, Any]) -> list[str]:
    """The assumptions behind the estimate, one markdown bullet each, with the numbers used."""
    cal = report["calibration"]
    names = {r["preset"]: r["preset"].split()[0].removesuffix("_clip_vitb16") for r in report["estimate"]}
    sizes = ", ".join(sorted({f"{names[r['preset']]} {r['jpeg'][0]}x{r['jpeg'][1]}" for r in report["estimate"]}))
    return [
        f"- **GPU compute**: FLOPs per image counted here (torch FlopCounterMode, grouped-conv backward corrected) "
        f"divided by a sustained rate calibrated on a measurement by others: {cal['source']}. With the ResNet-50 "
        f"FLOPs counted here that is {cal['a100_flops_per_s'] / 1e12:.1f} TFLOP/s, "
        f"{100 * cal['a100_utilisation']:.0f} % of the A100's {A100_BF16_PEAK / 1e12:.0f} TFLOP/s dense bf16 peak. "
        "Other backbones and stages are assumed to run at the same sustained FLOP/s (ResNeXt's grouped convolutions "
        "usually run less efficiently on GPUs: its times are likely optimistic).",
        f"- **H100 SXM**: the A100 rate x {cal['h100_scale']:.2f}, the ratio of memory bandwidths (3.35 / 2.04 TB/s): "
        "ResNet training is memory-bound. The ratio of bf16 peaks (989 / 312 = 3.17) would be the optimistic bound; "
        f"at the A100's utilisation it would give {H100_BF16_PEAK * cal['a100_utilisation'] / 1e12:.0f} TFLOP/s.",
        '- **Mixed precision** as in NVIDIA\'s benchmark (bagmar: `train.precision = "bf16"`, and '
        "`train.channels_last = true` for the NHWC layout tensor cores prefer); in fp32/TF32 the A100 figure is "
        "938 img/s, 2.6x slower.",
        "- **Loader**: per-worker rate = images per CPU-second of one DataLoader worker process running bagmar's own "
        "decode + augmentation as the large-scale presets set it (`ImageListDataset`, `image_train_transform`: "
        f"RandomResizedCrop 224, flip, ColorJitter 0.4, RandAugment {RANDAUGMENT}, batches of 32 into the worker "
        "queue), measured here on generated JPEGs of the dataset's "
        f"typical size ({sizes}); each of {' or '.join(str(n) for n in report['workers'])} workers is assumed to "
        "have a core of this speed to itself and the rate to scale linearly with workers. The trainer process's "
        "share (receiving batches, copying them to the GPU) is not counted. Without RandAugment the rate is higher "
        "(the data-path table's in-process columns).",
        "- **Epoch length** = the train split: instance sampling visits each image once, and bagmar's class-aware "
        "sampler (`data/samplers.py`) draws len(train) indices an epoch (ceil(n / 4) groups of 4, cut to n); one "
        "process keeps the last short batch.",
        "- **Wall time per epoch** = max(GPU compute, loader): the two overlap (DataLoader prefetch); evaluation, "
        "checkpointing, the first epoch's warm-up and disk reads (files assumed in the page cache or on fast SSD) are "
        "not included.",
        "- **The CLIP ViT-B/16 presets** (`*_clip_vitb16`: AdaptFormer, base frozen, cosine head on CLIP's projected "
        "features): their FLOPs are counted on the same model with random weights (CLIP's weights cost the same); "
        "the backward still runs through every block (the adapters sit in each) but computes no weight gradients "
        "for the base. The sustained rate is the ResNet-50 calibration's: a ViT's large matmuls usually reach a "
        "higher share of the tensor cores' peak, so their GPU times are likely pessimistic. Their loader runs "
        "RandomResizedCrop and flip only (no ColorJitter, no RandAugment: LIFT's pipeline). Their GPU memory at "
        "the recipe's batch is estimated from what autograd saves for backward in a CPU bf16-autocast step (batches "
        "of 1 and 2, extrapolated linearly) plus fp32 weights and the trainable parameters' gradient and momentum; "
        "CUDA's context, workspaces, allocator slack and the evaluation pass are not counted, and a GPU's autocast "
        "keeps a few ops in fp32 that the CPU's does not. `benchmarks/finetune_gpu.py` measures them on a GPU.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=_positive, default=1, help="torch threads of this process")
    parser.add_argument("--files", type=_positive, default=48, help="JPEGs generated per dataset size")
    parser.add_argument("--rounds", type=_positive, default=2, help="passes over the JPEGs (best kept)")
    parser.add_argument("--batch", type=_positive, default=2, help="batch of the timed CPU training steps")
    parser.add_argument("--steps", type=int, default=2, help="timed CPU training steps per model (0: none)")
    parser.add_argument("--workers", default="8,16", help="comma-separated DataLoader worker counts to estimate")
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    args = parser.parse_args()
    try:
        workers = [int(n) for n in args.workers.split(",")]
    except ValueError:
        parser.error("--workers: comma-separated positive integers")
    if args.steps < 0 or any(n < 1 for n in workers):
        parser.error("--steps must be >= 0 and --workers positive")
    torch.set_num_threads(args.threads)
    report = run(PRESETS, files=args.files, rounds=args.rounds, batch=args.batch, steps=args.steps, workers=workers)
    report["command"] = " ".join(["python", "benchmarks/large_scale_estimate.py", *sys.argv[1:]])
    for line in render(report):
        result(line)
    if args.json is not None:
        try:
            atomic_write(args.json, (json.dumps(report, indent=1) + "\n").encode())
        except BagmarError as exc:
            err.print(f"Error: {exc}", markup=False)
            sys.exit(exc.exit_code)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


if __name__ == "__main__":
    main()
