"""Test-time augmentation for a recorded model: which views (`eval.tta`), the input they are taken from, and the
module that averages a model's logits over them (functional/tta.py holds the math).

LIFT's five crops (Shi et al., ICML 2024) come from an image resized to 248 for crops of 224; for a model of crop c
the side is `lift_resize(c)` = round(c * 248 / 224). A model trained on image files then reads each image resized
(shorter side) and center-cropped to that side, and the five crops are taken from it. A model trained on tensors
(one fixed H x W) has its input upsampled to that side (bilinear) inside the module, so it takes H x W as always.
Flip alone needs no other input.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from bagmar_cli.checkpoint_meta import ModelSpec
from bagmar_cli.data.images import EvalPreprocess
from bagmar_cli.errors import SettingError
from bagmar_cli.functional.tta import TTA_MODES, lift_resize, tta_logits, views

NONE = "none"


@dataclass(frozen=True)
class TTAPlan:
    """The views of one model: `crop` (five crops of that side, or None), `flip`, and `upsample` (the side a tensor
    model's input is resized to before its five crops; None when the input already has it)."""

    mode: str
    crop: int | None
    flip: bool
    upsample: int | None

    def prepared(self, x: Tensor) -> Tensor:
        """A batch read as `tta_preprocess` says, upsampled for a tensor model's five crops."""
        if self.upsample is None:
            return x
        return nn.functional.interpolate(x, size=(self.upsample, self.upsample), mode="bilinear", align_corners=False)

    def views_of(self, x: Tensor) -> list[Tensor]:
        """The views of a batch read as `tta_preprocess` says (each of the model's usual input size)."""
        return views(self.prepared(x), crop=self.crop, flip=self.flip)


def parse_tta(mode: str | None, default: str) -> str:
    """`mode` (or the checkpoint's `default`, its `eval.tta`) checked against TTA_MODES."""
    chosen = mode or default
    if chosen not in TTA_MODES:
        raise SettingError(f"`tta` {chosen!r}: choose from {', '.join(TTA_MODES)}")
    return chosen


def tta_plan(mode: str, spec: ModelSpec) -> TTAPlan | None:
    """The plan of `mode` for the model `spec` describes; None for "none"."""
    five, flip = TTA_MODES[mode]
    if not five and not flip:
        return None
    crop = spec.input_size[1] if five else None
    if crop is not None and spec.input_size[1] != spec.input_size[2]:
        raise SettingError(f"`tta` {mode!r} takes square crops; this model takes {spec.input_size[1:]} images")
    upsample = lift_resize(crop) if crop is not None and spec.preprocess is None else None
    return TTAPlan(mode, crop, flip, upsample)


def tta_preprocess(preprocess: EvalPreprocess | None, plan: TTAPlan | None) -> EvalPreprocess | None:
    """How an image file is read for `plan`: resized and center-cropped to LIFT's side for five crops."""
    if preprocess is None or plan is None or plan.crop is None:
        return preprocess
    side = lift_resize(plan.crop)
    return preprocess.model_copy(update={"resize": side, "crop": side})


def tta_input_size(spec: ModelSpec, plan: TTAPlan | None) -> list[int]:
    """[C, H, W] of the batches the TTA module takes (what a served model's input is)."""
    pre = tta_preprocess(spec.preprocess, plan)
    return list(spec.input_size) if pre is None or pre is spec.preprocess else [spec.input_size[0], pre.crop, pre.crop]


class TTAModule(nn.Module):
    """A model whose logits are the mean of `model`'s over the plan's views (functional/tta.tta_logits)."""

    def __init__(self, model: nn.Module, plan: TTAPlan) -> None:
        super().__init__()
        self.model = model
        self.plan = plan

    def forward(self, x: Tensor) -> Tensor:
        return tta_logits(self.model, self.plan.prepared(x), crop=self.plan.crop, flip=self.plan.flip)
