"""The exported computation: the Classifier plus the post-hoc method baked in as fixed buffers.

τ-norm becomes re-scaled head weights, logit adjustment a bias, PN a re-scaling of the softmax. LoRA is merged into
its linears (models/finetune.merged: plain timm and torch modules, nothing of peft), and test-time views, when asked,
are part of the module (engine/evaluate/tta.TTAModule). The module takes `images`, float (N, C, H, W) already
normalised, and returns `logits` or `probabilities` in the class order of the checkpoint's `classes`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from bagmar_cli.checkpoint import Checkpoint
from bagmar_cli.choices import Output, PosthocMethod
from bagmar_cli.console import info
from bagmar_cli.engine.evaluate.inference import split_outputs_of
from bagmar_cli.engine.evaluate.posthoc import Posthoc, require_linear_head, resolve_posthoc
from bagmar_cli.engine.evaluate.tta import TTAModule, TTAPlan, parse_tta, tta_plan
from bagmar_cli.engine.restore import checkpoint_dataset, model_from_checkpoint
from bagmar_cli.errors import CheckpointError, SettingError
from bagmar_cli.functional.posthoc import (
    logit_adjust,
    pn_column_sums,
    pn_rescale,
    renormalise,
    tau_norm_weights,
)
from bagmar_cli.functional.priors import class_prior
from bagmar_cli.models import Classifier
from bagmar_cli.models.finetune import merged


class ServingModule(nn.Module):
    """Normalised images -> logits or probabilities, with the post-hoc method as fixed buffers."""

    bias: Tensor | None  # a buffer
    pn_factor: Tensor | None  # a buffer

    def __init__(self, model: nn.Module, output: Output, bias: Tensor | None = None, pn_factor: Tensor | None = None):
        super().__init__()
        self.model = model
        self.output = Output(output).value  # a plain string: TorchScript traces it as a constant
        self.register_buffer("bias", bias)  # logit adjustment: -tau * log(prior)
        self.register_buffer("pn_factor", pn_factor)  # PN: c^-tau, floored and capped as pn_rescale does

    def forward(self, images: Tensor) -> Tensor:
        logits: Tensor = self.model(images)
        if self.bias is not None:
            logits = logits + self.bias
        if self.output == Output.LOGITS:
            return logits
        probs = torch.softmax(logits, dim=1)
        return probs if self.pn_factor is None else renormalise(probs * self.pn_factor)


Baker = Callable[[Classifier, Posthoc, list[int]], dict[str, Tensor]]
"""(model copy, post-hoc method, training counts) -> the ServingModule buffers; may change the model in place."""


def _bake_pn(model: Classifier, posthoc: Posthoc, counts: list[int]) -> dict[str, Tensor]:
    """PN: the factor c^-tau that multiplies the softmax."""
    assert posthoc.c is not None  # _check_posthoc refuses a PN record without c
    ones = torch.ones(len(posthoc.c), dtype=torch.float32)
    return {"pn_factor": pn_rescale(ones, posthoc.c, posthoc.tau)}


def _bake_tau_norm(model: Classifier, posthoc: Posthoc, counts: list[int]) -> dict[str, Tensor]:
    """τ-norm: the head's weight rows divided by their norm^tau, in place (the bias is kept)."""
    with torch.no_grad():
        model.head.weight.copy_(tau_norm_weights(model.head.weight, posthoc.tau))
    return {}


def _bake_logit_adjust(model: Classifier, posthoc: Posthoc, counts: list[int]) -> dict[str, Tensor]:
    """Logit adjustment: the bias -tau * log(prior) added to the logits."""
    zeros = torch.zeros(1, model.head.weight.shape[0])
    return {"bias": logit_adjust(zeros, class_prior(torch.tensor(counts)), posthoc.tau)[0]}


BAKERS: dict[PosthocMethod, Baker] = {
    PosthocMethod.PN: _bake_pn,
    PosthocMethod.TAU_NORM: _bake_tau_norm,
    PosthocMethod.LOGIT_ADJUST: _bake_logit_adjust,
}


def build_serving(
    model: Classifier,
    posthoc: Posthoc | None,
    train_counts: list[int],
    output: Output | str | None = None,
    tta: TTAPlan | None = None,
) -> ServingModule:
    """The served module (on a copy of `model`, LoRA merged), averaging over the views of `tta` when given; PN
    always outputs probabilities."""
    output = Output.parse_optional(output)
    pn = posthoc is not None and posthoc.method == PosthocMethod.PN
    if pn and output == Output.LOGITS:
        raise SettingError("PN exports probabilities (PN scores are not logits); use `output` probabilities")
    model = cast(Classifier, merged(model)).cpu().eval()
    buffers = BAKERS[posthoc.method](model, posthoc, train_counts) if posthoc else {}
    served = model if tta is None else TTAModule(model, tta)
    return ServingModule(served, output or (Output.PROBABILITIES if pn else Output.LOGITS), **buffers).eval()


def serving_from_checkpoint(ckpt: Checkpoint, tta: str | None = None) -> ServingModule:
    """A checkpoint's or bundle's model with its recorded post-hoc method (as `tau` auto) and the test-time views
    `tta` (None: its `eval.tta`)."""
    posthoc = served_posthoc(ckpt, "auto", None)
    plan = tta_plan(parse_tta(tta, ckpt.meta.settings.eval.tta), ckpt.meta.model)
    return build_serving(model_from_checkpoint(ckpt), posthoc, ckpt.meta.train_counts, ckpt.meta.output, plan)


def served_posthoc(
    ckpt: Checkpoint, tau: str, method: PosthocMethod | str | None, data: Path | None = None
) -> Posthoc | None:
    """The post-hoc method to serve (`tau` and `method`, read as eval reads them), PN always with its c."""
    posthoc = resolve_posthoc(ckpt, tau, method)
    if posthoc is not None and posthoc.method == PosthocMethod.PN:
        posthoc = replace(posthoc, c=_pn_column_sums(ckpt, data))
    _check_posthoc(posthoc, ckpt)
    return posthoc


def posthoc_record(posthoc: Posthoc | None) -> dict[str, Any] | None:
    """The record sidecars and bundles store, in tune-tau's fields: method, tau and (PN) c."""
    if posthoc is None:
        return None
    c = None if posthoc.c is None else [float(v) for v in posthoc.c]
    return {"method": posthoc.method.value, "tau": posthoc.tau, "c": c}


def _check_posthoc(posthoc: Posthoc | None, ckpt: Checkpoint) -> None:
    """τ-norm needs a linear head; PN one c_j per class (the metadata schema checked the recorded fields)."""
    if posthoc is None:
        return
    if posthoc.method == PosthocMethod.TAU_NORM:
        require_linear_head(ckpt)
    classes = ckpt.meta.model.num_classes
    if posthoc.method == PosthocMethod.PN and (posthoc.c is None or posthoc.c.shape != (classes,)):
        raise CheckpointError(f"{ckpt.path}: the PN record needs c, one column sum per class ({classes})")


def _pn_column_sums(ckpt: Checkpoint, data: Path | None) -> torch.Tensor:
    """PN's c, in float64: the recorded one (c does not depend on tau), else measured on the val split."""
    recorded = ckpt.meta.posthoc
    if recorded is not None and recorded.method == "pn" and recorded.c is not None:
        info(f"PN: using the column sums c recorded on the {recorded.split or 'tuning'} split")
        return torch.tensor(recorded.c, dtype=torch.float64)
    root, manifest = checkpoint_dataset(ckpt, data)
    if "val" not in manifest.splits:
        raise SettingError(
            f"PN needs column sums c from a validation split and dataset {root} has none; "
            "prepare it with `val_per_class` or record c by tuning PN's τ (`bagmar tune-tau`)"
        )
    spec = ckpt.meta.model
    logits = split_outputs_of(
        model_from_checkpoint(ckpt), root, "val", preprocess=spec.preprocess, mean=spec.mean, std=spec.std
    ).logits
    info(f"PN: column sums c measured on the {len(logits)} images of the val split of {root}")
    return pn_column_sums(logits)
