"""Two-stage training: the [stage2] table as a typed partial tree, its checks, and the two one-stage settings.

Each `Stage2*` section has the fields of its `sections` counterpart that stage 2 may change, each None ("as stage
1") unless set; their types are checked here, their bounds and cross-field checks on the merged stage-2 tree, so
an error names the `stage2.` key either way. tests/settings/test_stages.py keeps the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bagmar_cli.settings.messages import describe
from bagmar_cli.settings.trees import flatten_settings, merge

if TYPE_CHECKING:
    from bagmar_cli.settings.schema import Settings

# what a [stage2] table may not change: stage 2 trains the same network on the same data, where stage 1 ran
STAGE1_ONLY = (
    "description",
    "data.dataset",
    "data.root",
    "data.imb",
    "data.profile",
    "data.val_per_class",
    "model.backbone",
    "model.pretrained",
    "model.features",
    "model.peft",  # the adapters are part of the network stage 1 trained
    "model.peft_rank",
    "model.lora_targets",
    "model.lora_alpha",
    "model.lora_dropout",
    "model.adaptformer_scale",
    "train.device",
)


class _Partial(BaseModel):
    """A partial section: unknown keys are errors; a None field is stage 1's value."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Stage2Data(_Partial):
    """data: what stage 2 changes (`sections.DataSettings`)."""

    val_split: str | None = None
    sampler: Literal["instance", "class", "sqrt", "class_aware"] | None = None
    samples_per_class: int | None = None
    epoch_size: Literal["dataset", "max_class"] | None = None
    augment_on: Literal["batch", "sample"] | None = None
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] | None = None
    random_crop: bool | None = None
    crop_padding: int | None = None
    hflip: bool | None = None
    autoaugment: bool | None = None
    cutout: int | None = None
    crop_scale_min: float | None = None
    color_jitter: float | None = None
    randaugment: str | None = None
    crop: int | None = None
    max_bad_fraction: float | None = None


class Stage2Model(_Partial):
    """model: what stage 2 changes (`sections.ModelSettings`)."""

    weights: Path | None = None
    head: Literal["linear", "normed"] | None = None
    head_scale: float | None = None
    drop_rate: float | None = None
    freeze: Literal["none", "backbone", "all_but_last_stage"] | None = None
    frozen_bn: Literal["eval", "train"] | None = None
    train_norms: bool | None = None
    train_biases: bool | None = None
    head_init: Literal["random", "class_mean", "text"] | None = None
    text_model: str | None = None
    text_pretrained: str | None = None
    text_weights: Path | None = None
    text_prompt: str | None = None


class Stage2Loss(_Partial):
    """loss: what stage 2 changes (`sections.LossSettings`)."""

    name: str | None = None
    reweight: Literal["none", "cb"] | None = None
    cb_beta: float | None = None
    reweight_epoch: int | None = None
    focal_gamma: float | None = None
    ldam_max_margin: float | None = None
    ldam_scale: float | None = None
    la_tau: float | None = None
    lambda1: float | None = None
    lambda2: float | None = None
    eps: float | None = None
    accumulation: Literal["reference", "sum", "ema"] | None = None
    form: Literal["paper", "reference"] | None = None
    ema_decay: float | None = None
    label_smoothing: float | None = None


class Stage2Optim(_Partial):
    """optim: what stage 2 changes (`sections.OptimSettings`)."""

    name: Literal["sgd", "adamw"] | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    nesterov: bool | None = None
    head_lr: float | None = None
    head_weight_decay: float | None = None
    lr_batch: int | None = None
    lr_scaling: Literal["keep", "linear"] | None = None
    layer_decay: float | None = None
    clip_grad: float | None = None


class Stage2Schedule(_Partial):
    """schedule: what stage 2 changes (`sections.ScheduleSettings`)."""

    name: Literal["cosine", "step", "constant"] | None = None
    warmup_epochs: int | None = None
    warmup_factor: float | None = None
    min_lr: float | None = None
    milestones: list[int] | None = None
    gamma: float | None = None


class Stage2Train(_Partial):
    """train: what stage 2 changes (`sections.TrainSettings`)."""

    epochs: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    val_every: int | None = None
    log_every: int | None = None
    precision: Literal["fp32", "bf16"] | None = None
    channels_last: bool | None = None
    compile: bool | None = None
    ema: bool | None = None
    ema_decay: float | None = None
    mixup_alpha: float | None = None
    cutmix_alpha: float | None = None


class Stage2Eval(_Partial):
    """eval: what stage 2 changes (`sections.EvalSettings`)."""

    batch_size: int | None = None
    tta: Literal["none", "flip", "five_crop", "five_crop_flip"] | None = None


class Stage2(_Partial):
    """The [stage2] table: the settings stage 2 changes, section by section."""

    data: Stage2Data | None = None
    model: Stage2Model | None = None
    loss: Stage2Loss | None = None
    optim: Stage2Optim | None = None
    schedule: Stage2Schedule | None = None
    train: Stage2Train | None = None
    eval: Stage2Eval | None = None

    def changes(self) -> dict[str, Any]:
        """The table as written: only the keys it sets."""
        return self.model_dump(mode="json", exclude_none=True)

    @property
    def weights(self) -> Path | None:
        """The backbone stage 2 starts from, when the table names one (`model.weights`)."""
        return None if self.model is None else self.model.weights


def check_stage2_table(table: Any) -> None:
    """ValueError for an empty [stage2] table or one that changes a stage-1-only setting (`STAGE1_ONLY`)."""
    if not isinstance(table, dict):
        return  # not a table: the schema says so
    if not table:
        raise ValueError("[stage2] is empty: give the settings that change for stage 2, or leave it out")
    flat = flatten_settings(table)
    fixed = sorted(key for key in flat if key in STAGE1_ONLY or key.startswith("stage2."))
    if "description" in table:
        fixed = ["description", *fixed]
    if fixed:
        raise ValueError(f"stage2.{fixed[0]} cannot change between the stages: set it once, for both")


def split_stages(settings: Settings) -> tuple[Settings, Settings | None]:
    """(stage 1, stage 2) as one-stage settings; stage 2 is None for a one-stage run.

    Stage 2 is stage 1 changed by the [stage2] keys, with its backbone from `model.weights`: the file the
    [stage2] table names (stage 1 is then skipped), else left None for the trainer to point at stage 1's
    selected checkpoint. Stage 2 never re-reads stage 1's own source of weights (`pretrained`, `weights`).
    """
    first = settings.model_copy(update={"stage2": None})
    if settings.stage2 is None:
        return first, None
    changes = settings.stage2.changes()
    tree = merge(first.model_dump(mode="json", exclude_none=True), {"model": {"pretrained": False}})
    tree["model"].pop("weights", None)
    try:
        second = type(settings).model_validate(merge(tree, changes))
    except ValidationError as exc:
        raise ValueError(describe(exc, changes, type(settings), prefix="stage2.")) from None
    return first, second
