"""The export formats: one `Format` each, holding its file suffix, its writer and its loader."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from bagmar_cli.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from bagmar_cli.checkpoint_meta import parse_meta
from bagmar_cli.choices import ExportFormat
from bagmar_cli.engine.serve.export.runner import Runner, torch_runner
from bagmar_cli.engine.serve.export.serving import ServingModule, serving_from_checkpoint
from bagmar_cli.errors import BagmarError
from bagmar_cli.files import atomic_write

OPSET = 17  # ONNX opset: onnxruntime >= 1.12 runs it
INPUT_NAME = "images"
BUNDLE_DROPS = {"metrics", "optimizer_param_groups", "scheduler", "rng"}  # training state a bundle leaves out


Writer = Callable[[Path, ServingModule, Checkpoint, dict[str, Any]], None]
"""(path, serving module, source checkpoint, sidecar record) -> writes the export file at path."""

Loader = Callable[[Path, torch.device], Runner]
"""(path, device) -> a runner of the export file at path."""


@dataclass(frozen=True)
class Format:
    """One export format: how its files are named, written and read back."""

    suffix: str  # of the default output name: best.safetensors -> best<suffix>
    write: Writer
    load: Loader
    opset: int | None = None  # the ONNX opset the writer targets, recorded in the sidecar
    fixed_batch: bool = True  # whether `--batch N` fixes the batch axis (a bundle runs any batch)


def _example(sidecar: dict[str, Any]) -> Tensor:
    """A traced input: the fixed batch, or 2 images for a dynamic batch axis."""
    batch = sidecar["batch"] if isinstance(sidecar["batch"], int) else 2
    return torch.zeros(batch, *sidecar["input_size"])


def _write_onnx(path: Path, serving: ServingModule, ckpt: Checkpoint, sidecar: dict[str, Any]) -> None:
    """torch.onnx (TorchScript-based exporter) with a dynamic or fixed batch axis."""
    dynamic = None if isinstance(sidecar["batch"], int) else {INPUT_NAME: {0: "batch"}, serving.output: {0: "batch"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            serving,
            (_example(sidecar),),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to a file object; the hint omits it
            input_names=[INPUT_NAME],
            output_names=[serving.output],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    atomic_write(path, buffer.getvalue())


def _write_torchscript(path: Path, serving: ServingModule, ckpt: Checkpoint, sidecar: dict[str, Any]) -> None:
    """A traced TorchScript module (it runs any batch size); the export's parity check, not trace's own, compares it."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices
        traced = torch.jit.trace(serving, _example(sidecar), check_trace=False)  # type: ignore[no-untyped-call]  # torch leaves trace unannotated
        torch.jit.save(traced, buffer)
    atomic_write(path, buffer.getvalue())


def _write_bundle(path: Path, serving: ServingModule, ckpt: Checkpoint, sidecar: dict[str, Any]) -> None:
    """A checkpoint of kind "bundle": model weights and the metadata to rebuild and serve the model (its
    `eval.tta` the test-time views exported; the weights stay unmerged, as the checkpoint's)."""
    kept = ckpt.meta.model_dump(mode="json", exclude=BUNDLE_DROPS)
    kept["settings"]["eval"]["tta"] = sidecar.get("tta", kept["settings"]["eval"]["tta"])
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
    except Exception as exc:  # noqa: BLE001 -- onnxruntime raises its own exception types for damaged files
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
            module = torch.jit.load(str(path), map_location=device).eval()  # type: ignore[no-untyped-call]  # unannotated in torch
        except RuntimeError as exc:
            raise BagmarError(f"{path} is not a loadable TorchScript file ({str(exc).splitlines()[0]})") from None
    run = torch_runner(module, device)

    def run_unoptimised(images: Tensor) -> Tensor:
        with torch.jit.optimized_execution(False):  # type: ignore[attr-defined]  # public, but missing from torch.jit.__all__
            return run(images)

    return run_unoptimised


def _load_bundle(path: Path, device: torch.device) -> Runner:
    """A bundle (or checkpoint) rebuilt as its ServingModule."""
    return torch_runner(serving_from_checkpoint(load_checkpoint(path)).to(device), device)


FORMATS: Mapping[ExportFormat, Format] = MappingProxyType(
    {
        ExportFormat.ONNX: Format(".onnx", _write_onnx, _load_onnx, opset=OPSET),
        ExportFormat.TORCHSCRIPT: Format(".torchscript.pt", _write_torchscript, _load_torchscript),
        ExportFormat.SAFETENSORS: Format(".bundle.safetensors", _write_bundle, _load_bundle, fixed_batch=False),
    }
)


def format_of(fmt: ExportFormat | str) -> Format:
    """The Format of `format` (SettingError for an unknown one)."""
    return FORMATS[ExportFormat.parse(fmt)]
