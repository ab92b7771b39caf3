"""Export a checkpoint for serving, with its post-hoc method baked in: ONNX, TorchScript or a bundle.

The served computation is `ServingModel`: the Classifier plus the post-hoc method as fixed buffers
(τ-norm as re-scaled head weights, logit adjustment as a bias, PN as a re-scaling of the softmax). It
takes `images`, float (N, C, H, W) already normalised, and returns `logits` or `probabilities` in the
class order of the checkpoint's `classes`. A JSON sidecar `<out>.json` says how to prepare images and read outputs.
Every format can be read back here too (`load_export`), for `--check` and for `bagmar predict`.
"""

from __future__ import annotations

import copy
import io
import json
import os
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bagmar_cli import __version__
from bagmar_cli.checkpoint import Checkpoint, file_sha256, load_checkpoint, save_checkpoint
from bagmar_cli.checkpoint_meta import parse_meta
from bagmar_cli.console import info, warn
from bagmar_cli.data import load_split
from bagmar_cli.data.transforms import eval_transform
from bagmar_cli.engine.inference import compute_outputs
from bagmar_cli.engine.posthoc import Posthoc, resolve_posthoc
from bagmar_cli.engine.restore import checkpoint_dataset, evaluation_split, load_weights, model_from_checkpoint
from bagmar_cli.engine.sidecar import Sidecar, sidecar_of
from bagmar_cli.errors import BagmarError, CheckpointError, DatasetError, UsageError
from bagmar_cli.files import atomic_write, check_writable
from bagmar_cli.functional.posthoc import (
    POSTHOC_METHODS,
    logit_adjust,
    pn_column_sums,
    pn_rescale,
    tau_norm_weights,
)
from bagmar_cli.functional.priors import class_prior
from bagmar_cli.models import Classifier

Runner = Callable[[Tensor], Tensor]
"""Normalised float images (N, C, H, W) -> outputs (N, num_classes), on CPU."""

OPSET = 17  # ONNX opset: onnxruntime >= 1.12 runs it
INPUT_NAME = "images"
OUTPUTS = ("logits", "probabilities")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "safetensors": ".bundle.safetensors"}
TOLERANCE = {"logits": (1e-4, 1e-4), "probabilities": (1e-4, 0.0)}  # (atol, rtol) of --check, per output
CHECK_IMAGES = 64  # validation images the --check compares on
CHANNELS = {1: "L", 3: "RGB"}  # Pillow mode of the input images, by channel count
BUNDLE_DROPS = {"metrics", "optimizer_param_groups", "scheduler", "rng"}  # training state a bundle leaves out


@dataclass
class ExportOptions:
    """What `bagmar export` was asked for (see its --help); strings are checked and parsed on creation."""

    checkpoint: Path
    format: str = "onnx"  # onnx, torchscript or safetensors (a bundle)
    tau: str = "auto"  # "auto" (what tune-tau recorded), "none", or a number
    method: str | None = None  # post-hoc method of a numeric tau (default pn, as for eval)
    out: Path | None = None  # default: beside the checkpoint, <stem> + SUFFIXES[format]
    batch: str | int | None = "dynamic"  # "dynamic" (None) or a fixed batch size
    check: bool = True  # compare the export with PyTorch on validation images
    output: str | None = None  # logits or probabilities; None: probabilities for PN, else logits
    data: Path | None = None  # dataset directory, if not the one recorded in the checkpoint
    overwrite: bool = False
    weights: str | None = None  # ema or model; None: what validation used (restore.default_weights)

    def __post_init__(self) -> None:
        _choice("--format", self.format, SUFFIXES)
        _choice("--output", self.output, OUTPUTS)
        _choice("--method", self.method, POSTHOC_METHODS)
        self.batch = parse_batch(self.batch)
        self.out = Path(self.out) if self.out else _default_out(Path(self.checkpoint), self.format)


def _choice(option: str, value: str | None, allowed: Any) -> None:
    """UsageError unless value is None or one of allowed."""
    if value is not None and value not in allowed:
        raise UsageError(f"{option} {value!r}: choose from {', '.join(allowed)}")


def parse_batch(value: str | int | None) -> int | None:
    """ "dynamic" (or None) becomes None; otherwise a positive batch size."""
    if value is None or value == "dynamic":
        return None
    try:
        size = int(value)
    except ValueError:
        raise UsageError(f"--batch {value!r}: expected dynamic or a positive integer") from None
    if size < 1:
        raise UsageError(f"--batch {value!r}: expected dynamic or a positive integer")
    return size


def _default_out(checkpoint: Path, fmt: str) -> Path:
    """Beside the checkpoint: best.safetensors -> best.onnx, best.torchscript.pt, best.bundle.safetensors."""
    if not checkpoint.name or checkpoint.is_dir():
        raise CheckpointError(f"{str(checkpoint)!r} is not a checkpoint file")
    return checkpoint.with_name(checkpoint.stem + SUFFIXES[fmt])


class ServingModel(nn.Module):
    """Normalised images -> logits or probabilities, with the post-hoc method as fixed buffers."""

    def __init__(self, model: Classifier, output: str, bias: Tensor | None = None, pn_factor: Tensor | None = None):
        super().__init__()
        self.model = model
        self.output = output
        self.register_buffer("bias", bias)  # logit adjustment: -tau * log(prior)
        self.register_buffer("pn_factor", pn_factor)  # PN: c^-tau, floored and capped as pn_rescale does

    def forward(self, images: Tensor) -> Tensor:
        logits = self.model(images)
        if self.bias is not None:
            logits = logits + self.bias
        if self.output == "logits":
            return logits
        probs = torch.softmax(logits, dim=1)
        if self.pn_factor is None:
            return probs
        scores = probs * self.pn_factor
        return scores / scores.sum(dim=1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)


def _bake_pn(model: Classifier, posthoc: Posthoc, counts: list[int]) -> dict[str, Tensor]:
    """PN: the factor c^-tau that multiplies the softmax."""
    ones = torch.ones(len(posthoc.c), dtype=torch.float32)
    return {"pn_factor": pn_rescale(ones, posthoc.c, posthoc.tau)}


def _bake_tau_norm(model: Classifier, posthoc: Posthoc, counts: list[int]) -> dict[str, Tensor]:
    """τ-norm: the head's weight rows divided by their norm^tau, in place (the bias is kept)."""
    if not isinstance(model.head, nn.Linear):
        raise UsageError("tau-norm needs a linear classifier head; this checkpoint's head is cosine-normalised")
    with torch.no_grad():
        model.head.weight.copy_(tau_norm_weights(model.head.weight, posthoc.tau))
    return {}


def _bake_logit_adjust(model: Classifier, posthoc: Posthoc, counts: list[int]) -> dict[str, Tensor]:
    """Logit adjustment: the bias -tau * log(prior) added to the logits."""
    zeros = torch.zeros(1, model.head.weight.shape[0])
    return {"bias": logit_adjust(zeros, class_prior(torch.tensor(counts)), posthoc.tau)[0]}


_BAKERS = {"pn": _bake_pn, "tau-norm": _bake_tau_norm, "logit-adjust": _bake_logit_adjust}


def build_serving(
    model: Classifier, posthoc: Posthoc | None, train_counts: list[int], output: str | None = None
) -> ServingModel:
    """The served module (on a copy of `model`); PN always outputs probabilities."""
    pn = posthoc is not None and posthoc.method == "pn"
    if pn and output == "logits":
        raise UsageError("PN exports probabilities (PN scores are not logits); use --output probabilities")
    model = copy.deepcopy(model).cpu().eval()
    buffers = _BAKERS[posthoc.method](model, posthoc, train_counts) if posthoc else {}
    return ServingModel(model, output or ("probabilities" if pn else "logits"), **buffers).eval()


def serving_from_checkpoint(ckpt: Checkpoint) -> ServingModel:
    """A checkpoint's or bundle's model with its recorded post-hoc method (as `--tau auto`)."""
    posthoc = served_posthoc(ckpt, "auto", None)
    return build_serving(model_from_checkpoint(ckpt), posthoc, ckpt.meta.train_counts, ckpt.meta.output)


def served_posthoc(ckpt: Checkpoint, tau: str, method: str | None, data: Path | None = None) -> Posthoc | None:
    """The post-hoc method to serve (as `bagmar eval --tau/--method` reads them), PN always with its c."""
    posthoc = resolve_posthoc(ckpt, tau, method)
    if posthoc is not None and posthoc.method == "pn":
        posthoc = replace(posthoc, c=_pn_column_sums(ckpt, data))
    _check_posthoc(posthoc, ckpt)
    return posthoc


def posthoc_record(posthoc: Posthoc | None) -> dict[str, Any] | None:
    """The record sidecars and bundles store, in tune-tau's fields: method, tau and (PN) c."""
    if posthoc is None:
        return None
    c = None if posthoc.c is None else [float(v) for v in posthoc.c]
    return {"method": posthoc.method, "tau": posthoc.tau, "c": c}


def _check_posthoc(posthoc: Posthoc | None, ckpt: Checkpoint) -> None:
    """CheckpointError for PN without one c_j per class (the metadata schema checked the recorded fields)."""
    if posthoc is None:
        return
    classes = ckpt.meta.model.num_classes
    if posthoc.method == "pn" and posthoc.c.shape != (classes,):
        raise CheckpointError(f"{ckpt.path}: the PN record needs c, one column sum per class ({classes})")


def _pn_column_sums(ckpt: Checkpoint, data: Path | None) -> torch.Tensor:
    """PN's c, in float64: the recorded one (c does not depend on tau), else measured on the val split."""
    recorded = ckpt.meta.posthoc
    if recorded is not None and recorded.method == "pn" and recorded.c is not None:
        info(f"PN: using the column sums c recorded on the {recorded.split or 'tuning'} split")
        return torch.tensor(recorded.c, dtype=torch.float64)
    root, manifest = checkpoint_dataset(ckpt, data)
    if "val" not in manifest.splits:
        raise UsageError(
            f"PN needs column sums c from a validation split and dataset {root} has none; "
            "prepare it with --val-per-class or record c with `bagmar tune-tau --method pn`"
        )
    images, _ = load_split(root, "val")
    spec = ckpt.meta.model
    logits, _ = compute_outputs(model_from_checkpoint(ckpt), images, spec.mean, spec.std)
    info(f"PN: column sums c measured on the {len(images)} images of the val split of {root}")
    return pn_column_sums(logits)


def export_model(opts: ExportOptions) -> Path:
    """Write the export and its sidecar `<out>.json`; returns the export's path."""
    out, sidecar_path = opts.out, sidecar_of(opts.out)
    ckpt = load_weights(opts.checkpoint, opts.weights)
    _check_writable(out, sidecar_path, Path(opts.checkpoint), opts.overwrite)
    posthoc = served_posthoc(ckpt, opts.tau, opts.method, opts.data)
    serving = build_serving(model_from_checkpoint(ckpt), posthoc, ckpt.meta.train_counts, opts.output)
    if opts.format == "safetensors" and opts.batch is not None:
        warn("--batch has no effect on a safetensors bundle (it runs any batch size)")
    sidecar = make_sidecar(ckpt, opts, serving.output, posthoc)
    checked = _publish(
        out,
        lambda path: _WRITERS[opts.format](path, serving, ckpt, sidecar),
        lambda path: check_export(path, sidecar, serving, ckpt, opts.data) if opts.check else None,
    )
    sidecar |= {"sha256": file_sha256(out), "check": checked}
    Sidecar.model_validate(sidecar)  # what predict will read back
    atomic_write(sidecar_path, (json.dumps(sidecar, indent=2, allow_nan=False) + "\n").encode())
    return out


def _check_writable(out: Path, sidecar: Path, checkpoint: Path, overwrite: bool) -> None:
    """UsageError when the export would replace its own checkpoint, or an existing file without --overwrite."""
    if out.resolve() == checkpoint.resolve():
        raise UsageError(f"--out {out} is the checkpoint being exported; choose another path")
    for path in (out, sidecar):
        if path.exists() and not overwrite:
            raise UsageError(f"{path} already exists; pass --overwrite to replace it, or choose another --out")
        if path.is_dir():
            raise UsageError(f"{path} is a directory; choose another --out")
        check_writable(path)


def _publish(out: Path, write: Callable[[Path], None], check: Callable[[Path], Any]) -> Any:
    """Write to a hidden sibling, check it, then rename it to `out`: a failed check leaves nothing behind."""
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        checked = check(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return checked


def make_sidecar(ckpt: Checkpoint, opts: ExportOptions, output: str, posthoc: Posthoc | None) -> dict[str, Any]:
    """Everything needed to serve the export with only its runtime and Pillow (see docs/export.md)."""
    spec = ckpt.meta.model
    channels, height, width = spec.input_size
    return {
        "format": opts.format,
        "file": opts.out.name,
        "bagmar_version": __version__,
        "torch_version": torch.__version__,
        "opset": OPSET if opts.format == "onnx" else None,
        "source_checkpoint": str(Path(opts.checkpoint).resolve()),
        "source_checkpoint_sha256": ckpt.sha256,
        "input": INPUT_NAME,
        "output": output,
        "batch": "dynamic" if opts.batch is None or opts.format == "safetensors" else opts.batch,
        "classes": list(ckpt.meta.classes),
        "input_size": [channels, height, width],
        "channels": CHANNELS.get(channels),
        "resize": {"height": height, "width": width, "filter": "bilinear"},
        "mean": list(spec.mean),
        "std": list(spec.std),
        "posthoc": posthoc_record(posthoc),
    }


def _example(sidecar: dict[str, Any]) -> Tensor:
    """A traced input: the fixed batch, or 2 images for a dynamic batch axis."""
    batch = sidecar["batch"] if isinstance(sidecar["batch"], int) else 2
    return torch.zeros(batch, *sidecar["input_size"])


def _write_onnx(path: Path, serving: ServingModel, ckpt: Checkpoint, sidecar: dict[str, Any]) -> None:
    """torch.onnx (TorchScript-based exporter) with a dynamic or fixed batch axis."""
    dynamic = None if isinstance(sidecar["batch"], int) else {INPUT_NAME: {0: "batch"}, serving.output: {0: "batch"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            serving,
            (_example(sidecar),),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[serving.output],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    atomic_write(path, buffer.getvalue())


def _write_torchscript(path: Path, serving: ServingModel, ckpt: Checkpoint, sidecar: dict[str, Any]) -> None:
    """A traced TorchScript module (it runs any batch size); --check, not trace's own check, compares it."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices
        torch.jit.save(torch.jit.trace(serving, _example(sidecar), check_trace=False), buffer)
    atomic_write(path, buffer.getvalue())


def _write_bundle(path: Path, serving: ServingModel, ckpt: Checkpoint, sidecar: dict[str, Any]) -> None:
    """A checkpoint of kind "bundle": model weights and the metadata to rebuild and serve the model."""
    kept = ckpt.meta.model_dump(mode="json", exclude=BUNDLE_DROPS)
    meta = parse_meta(
        kept
        | {
            "kind": "bundle",
            "posthoc": sidecar["posthoc"],
            "output": sidecar["output"],
            "source_checkpoint_sha256": ckpt.sha256,
        }
    )
    save_checkpoint(path, {f"model.{k}": v for k, v in ckpt.section("model").items()}, meta)


_WRITERS = {"onnx": _write_onnx, "torchscript": _write_torchscript, "safetensors": _write_bundle}


def load_export(path: Path, fmt: str, batch: int | None = None, device: str | torch.device = "cpu") -> Runner:
    """Read an export back as a runner; a fixed-batch export is fed padded batches of exactly `batch`."""
    run = _LOADERS[fmt](Path(path), torch.device(device))
    return _padded(run, batch) if batch else run


def _load_onnx(path: Path, device: torch.device) -> Runner:
    """An onnxruntime session (CUDA provider when asked for and available)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise BagmarError("running ONNX models needs onnxruntime: pip install 'bagmar[export]'") from None
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for damaged files
        raise BagmarError(f"{path} is not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
    return lambda images: torch.from_numpy(session.run(None, {INPUT_NAME: images.float().contiguous().numpy()})[0])


def _load_torchscript(path: Path, device: torch.device) -> Runner:
    """torch.jit.load, run without gradients on `device` and without the profiling executor's re-compilation.

    bagmar runs a loaded module on a few batches (a check, one predict call): compiling fused kernels
    for each new batch shape cost more CPU time than it saved in our measurements.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices
        try:
            module = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as exc:
            raise BagmarError(f"{path} is not a loadable TorchScript file ({str(exc).splitlines()[0]})") from None
    run = torch_runner(module, device)

    def run_unoptimised(images: Tensor) -> Tensor:
        with torch.jit.optimized_execution(False):
            return run(images)

    return run_unoptimised


def _load_bundle(path: Path, device: torch.device) -> Runner:
    """A bundle (or checkpoint) rebuilt as its ServingModel."""
    return torch_runner(serving_from_checkpoint(load_checkpoint(path)).to(device), device)


_LOADERS = {"onnx": _load_onnx, "torchscript": _load_torchscript, "safetensors": _load_bundle}


def torch_runner(module: nn.Module, device: torch.device) -> Runner:
    """Run a torch module without gradients on `device`; outputs come back as float32 on CPU."""

    @torch.no_grad()
    def run(images: Tensor) -> Tensor:
        return module(images.to(device)).float().cpu()

    return run


def _padded(run: Runner, batch: int) -> Runner:
    """Feed `run` chunks of exactly `batch` images, zero-padding the last, and drop the padding's outputs."""

    def run_padded(images: Tensor) -> Tensor:
        outputs = []
        for chunk in images.split(batch):
            pad = batch - len(chunk)
            full = torch.cat([chunk, chunk.new_zeros(pad, *chunk.shape[1:])]) if pad else chunk
            outputs.append(run(full)[: len(chunk)])
        return torch.cat(outputs)

    return run_padded


def check_export(
    path: Path, sidecar: dict[str, Any], serving: ServingModel, ckpt: Checkpoint, data: Path | None
) -> dict[str, Any]:
    """Compare the written export with the PyTorch serving module; BagmarError if they disagree."""
    images, source = check_inputs(ckpt, data)
    batch = sidecar["batch"] if isinstance(sidecar["batch"], int) else None
    exported = load_export(path, sidecar["format"], batch)(images)
    with torch.no_grad():
        reference = serving(images)
    return compare_outputs(exported, reference, serving.output, source)


def check_inputs(ckpt: Checkpoint, data: Path | None, n: int = CHECK_IMAGES) -> tuple[Tensor, str]:
    """Up to n normalised images of the val split (else test); random inputs when the dataset is not there."""
    spec = ckpt.meta.model
    try:
        root, manifest = checkpoint_dataset(ckpt, data)
    except DatasetError as exc:
        if data is not None:
            raise
        warn(f"checking on random inputs, not real images: {exc}")
        return torch.randn(n, *spec.input_size, generator=torch.Generator().manual_seed(0)), "random"
    split = evaluation_split(manifest)
    images, _ = load_split(root, split)
    return eval_transform(spec.mean, spec.std)(images[:n]), split


def compare_outputs(exported: Tensor, reference: Tensor, output: str, source: str) -> dict[str, Any]:
    """The check's record; BagmarError when any output is off by more than the tolerance or an argmax differs."""
    atol, rtol = TOLERANCE[output]
    diff = (exported.double() - reference.double()).abs()
    max_diff = float(diff.max()) if diff.numel() else 0.0
    within = bool((diff <= atol + rtol * reference.double().abs()).all())
    flips = int((exported.argmax(dim=1) != reference.argmax(dim=1)).sum())
    info(
        f"check: max |export - PyTorch| = {max_diff:.3g} over {len(reference)} {source} inputs "
        f"(tolerance {atol:g} + {rtol:g}·|PyTorch|), {flips} different predictions"
    )
    if not within or flips:
        raise BagmarError(
            f"the export disagrees with the PyTorch model (max abs diff {max_diff:.3g}, "
            f"{flips} different predictions); nothing was written"
        )
    return {"inputs": source, "n": len(reference), "max_abs_diff": max_diff, "atol": atol, "rtol": rtol}
