"""Any model bagmar writes, loaded to run: a checkpoint, a bundle, an ONNX or a TorchScript export.

Every kind becomes a `LoadedModel`: a runner on normalised batches plus what its inputs and outputs mean (from
the checkpoint's metadata, or the export's sidecar). `bagmar predict` classifies images with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from bagmar_cli.choices import Output
from bagmar_cli.data.images import EvalPreprocess
from bagmar_cli.engine.evaluate.tta import parse_tta, tta_input_size, tta_plan, tta_preprocess
from bagmar_cli.engine.restore import load_weights
from bagmar_cli.engine.runtime import resolve_device
from bagmar_cli.engine.serve.export.formats import format_of
from bagmar_cli.engine.serve.export.runner import Runner, padded, torch_runner
from bagmar_cli.engine.serve.export.serving import serving_from_checkpoint
from bagmar_cli.engine.serve.export.sidecar import CHANNELS, read_sidecar
from bagmar_cli.errors import BagmarError, SettingError


def load_export(path: Path, fmt: str, batch: int | None = None, device: str | torch.device = "cpu") -> Runner:
    """Read an export back as a runner; a fixed-batch export is fed padded batches of exactly `batch`."""
    run = format_of(fmt).load(Path(path), torch.device(device))
    return padded(run, batch) if batch else run


@dataclass
class LoadedModel:
    """A runner on normalised image batches, and what its inputs and outputs mean."""

    run: Runner
    classes: list[str]  # class names in output order
    input_size: list[int]  # [C, H, W]
    mean: list[float]  # per channel, for pixels scaled to [0, 1]
    std: list[float]
    output: str  # "logits" or "probabilities"
    source: str = "the model"  # the file that describes classes and outputs, for error messages
    preprocess: EvalPreprocess | None = None  # recorded by models trained on image files

    @property
    def channels(self) -> str:
        """The Pillow mode images are converted to."""
        mode = CHANNELS.get(self.input_size[0])
        if mode is None:
            raise SettingError(f"the model takes {self.input_size[0]}-channel images; predict reads only L or RGB")
        return mode

    def probabilities(self, images: Tensor) -> Tensor:
        """Class probabilities (N, C) of prepared (normalised) images (N, C, H, W)."""
        outputs = self.run(images).float()
        if outputs.ndim != 2 or outputs.shape[1] != len(self.classes):
            raise BagmarError(
                f"{self.source}: field classes names {len(self.classes)} classes but the model gives "
                f"{list(outputs.shape)[1:]} outputs per image"
            )
        return outputs if self.output == Output.PROBABILITIES else torch.softmax(outputs, dim=1)


def load_model(path: Path, device: str = "auto", tta: str | None = None) -> LoadedModel:
    """Any model kind: a .safetensors checkpoint or bundle, else an export described by its `<path>.json`.

    `tta`: the test-time views (None: a checkpoint's `eval.tta`, an export's baked-in views); an export runs only
    the views it was exported with."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        raise SettingError(f"model {path}: not a regular file (a FIFO, socket or device)")
    torch_device = resolve_device(device)
    if path.suffix == ".safetensors":
        return _from_checkpoint(path, torch_device, tta)
    return _from_export(path, torch_device, tta)


def _from_checkpoint(path: Path, device: torch.device, tta: str | None) -> LoadedModel:
    """A checkpoint or bundle, served with its recorded post-hoc method and the test-time views `tta`."""
    ckpt = load_weights(path)
    serving = serving_from_checkpoint(ckpt, tta).to(device)
    spec = ckpt.meta.model
    plan = tta_plan(parse_tta(tta, ckpt.meta.settings.eval.tta), spec)
    run = torch_runner(serving, device)
    preprocess = tta_preprocess(spec.preprocess, plan)
    size = tta_input_size(spec, plan)
    return LoadedModel(run, ckpt.meta.classes, size, spec.mean, spec.std, serving.output, str(path), preprocess)


def _from_export(path: Path, device: torch.device, tta: str | None) -> LoadedModel:
    """An ONNX or TorchScript export, read through the runtime its sidecar names."""
    if not path.is_file():
        raise SettingError(f"model {path} not found")
    sidecar = read_sidecar(path)
    if tta is not None and tta != sidecar.tta:
        raise SettingError(
            f"`tta` {tta}: {path} applies the test-time views {sidecar.tta!r}, fixed at export; "
            f"export the checkpoint again with `tta` {tta}"
        )
    run = load_export(path, sidecar.format, sidecar.fixed_batch, device)
    return LoadedModel(
        run,
        sidecar.classes,
        sidecar.input_size,
        sidecar.mean,
        sidecar.std,
        sidecar.output,
        f"{path}.json",
        sidecar.preprocess,
    )
