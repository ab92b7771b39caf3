"""The metadata of a checkpoint (or bundle): one strict schema, validated once when the file is opened.

Every field a command reads is typed here, so eval, tune-tau, export and predict never meet a missing key,
a number where a list belongs, or a NaN τ. Field comments say what each one holds (README, Checkpoints).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    model_validator,
)

from bagmar_cli.data.images import EvalPreprocess
from bagmar_cli.settings import ModelSettings, Settings

FORMAT = "bagmar-checkpoint"
FORMAT_VERSION = 1
ADAPTERS_FORMAT = "bagmar-adapters"  # the adapters-only file a `model.peft` run writes beside best.safetensors
TAU_MAX = 10.0  # τ of every post-hoc method lies in [0, TAU_MAX]: larger values only flatten scores to ties

Finite = Annotated[float, Field(allow_inf_nan=False)]
PositiveFinite = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
NonNegativeFinite = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Tau = Annotated[float, Field(ge=0.0, le=TAU_MAX, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """What rebuilds the network and prepares its inputs."""

    backbone: str  # timm model name
    head: Literal["linear", "normed"]  # classifier head (τ-norm needs "linear")
    num_classes: PositiveInt  # outputs of the head
    input_size: Annotated[list[PositiveInt], Field(min_length=3, max_length=3)]  # [C, H, W]
    mean: list[Finite]  # per channel, for pixels scaled to [0, 1]
    std: list[PositiveFinite]  # per channel, > 0
    # How eval, predict and exports prepare an image (resize, center crop, normalise): recorded for models trained
    # on image files. None (tensor datasets, and every checkpoint before it): images at input_size, normalised only.
    preprocess: EvalPreprocess | None = None

    @model_validator(mode="after")
    def _one_per_channel(self) -> ModelSpec:
        channels = self.input_size[0]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean and std need {channels} values, one per input channel")
        pre = self.preprocess
        if pre is not None and (pre.mean != self.mean or pre.std != self.std or [pre.crop] * 2 != self.input_size[1:]):
            raise ValueError("preprocess must crop to input_size and normalise with the model's mean and std")
        return self


class PosthocRecord(_Strict):
    """The post-hoc method tune-tau chose (or export baked in): method, τ, and PN's column sums c."""

    method: Literal["pn", "tau-norm", "logit-adjust"]
    tau: Tau
    c: list[NonNegativeFinite] | None = None  # PN: column sums, one per class, not all 0; None: measure them
    split: str | None = None  # split τ was tuned on (tune-tau)
    metric: str | None = None  # metric τ was chosen by (tune-tau)

    @model_validator(mode="after")
    def _c_only_for_pn(self) -> PosthocRecord:
        if self.c is not None and self.method != "pn":
            raise ValueError(f"c belongs to PN, not to {self.method}")
        if self.c is not None and not any(self.c):
            raise ValueError("c is all zeros: column sums of probabilities have at least one positive value")
        return self


class DatasetRef(_Strict):
    """The prepared dataset the model was trained on."""

    name: str
    root: str  # absolute path at training time
    manifest_sha256: str


class BestRecord(_Strict):
    """The best validation epoch so far."""

    epoch: NonNegativeInt
    top1: float
    split: str


class ParameterCounts(_Strict):
    """What the run trained: parameters with requires_grad (adapters, head...) and all of them, adapters included."""

    trainable: NonNegativeInt
    total: PositiveInt


class CheckpointMeta(_Strict):
    """All metadata of a checkpoint or bundle; the training state fields are absent from bundles."""

    format: Literal["bagmar-checkpoint"] = "bagmar-checkpoint"  # FORMAT
    format_version: PositiveInt = FORMAT_VERSION
    bagmar_version: str = ""  # the bagmar that wrote the file
    kind: Literal["checkpoint", "bundle"] = "checkpoint"
    settings: Settings  # the resolved settings of the run
    model: ModelSpec
    classes: list[str]  # class names in output order, one per output of the head
    train_counts: list[NonNegativeInt]  # training images per class, in label order
    dataset: DatasetRef | None = None
    epoch: NonNegativeInt | None = None  # epochs completed
    best: BestRecord | None = None
    selection_split: str | None = None  # split that selected the best epoch
    metrics: dict[str, Any] | None = None  # the metrics.jsonl record of the last epoch
    parameters: ParameterCounts | None = None  # trainable and total parameters (training checkpoints)
    optimizer_param_groups: list[dict[str, Any]] | None = None  # resume state (the tensors hold the rest)
    scheduler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    posthoc: PosthocRecord | None = None
    output: Literal["logits", "probabilities"] | None = None  # bundles: what the served model returns
    source_checkpoint_sha256: str | None = None  # bundles: the checkpoint they were exported from

    @model_validator(mode="after")
    def _one_per_class(self) -> CheckpointMeta:
        n = self.model.num_classes
        for name, values in (("classes", self.classes), ("train_counts", self.train_counts)):
            if len(values) != n:
                raise ValueError(f"{name} has {len(values)} entries for the model's {n} outputs")
        if self.posthoc is not None and self.posthoc.c is not None and len(self.posthoc.c) != n:
            raise ValueError(f"posthoc.c has {len(self.posthoc.c)} values for the model's {n} outputs")
        return self

    def encoded(self) -> dict[str, Any]:
        """The fields to write, absent ones left out (as the first format wrote them)."""
        encoded = {key: value for key, value in self.model_dump(mode="json").items() if value is not None}
        if encoded["model"]["preprocess"] is None:  # a tensor dataset's checkpoint reads as the first format's
            del encoded["model"]["preprocess"]
        return encoded


class AdapterMeta(_Strict):
    """The metadata of an adapters-only file: what rebuilds the model its tensors fit, and the base they fit on."""

    format: Literal["bagmar-adapters"] = "bagmar-adapters"  # ADAPTERS_FORMAT
    format_version: PositiveInt = 1
    bagmar_version: str = ""
    model: ModelSettings  # backbone, `peft` and its options, head: `build_model` from these (the base loaded)
    num_classes: PositiveInt
    in_chans: PositiveInt
    classes: list[str]
    base_weights: str | None = None  # `model.weights` of the run, as given (None: timm's pretrained, or none)
    base_weights_sha256: str | None = None  # SHA-256 of that file: the base the adapters were trained on


def parse_meta(raw: dict[str, Any]) -> CheckpointMeta:
    """Validate decoded metadata; ValueError naming the first bad field and what was expected."""
    try:
        return CheckpointMeta.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(first_error(exc)) from None


def first_error(exc: ValidationError) -> str:
    """The first validation error as `field path: message` (a check across fields names no single field)."""
    error = exc.errors()[0]
    message = error["msg"].removeprefix("Value error, ")
    where = ".".join(str(part) for part in error["loc"])
    return f"field {where}: {message}" if where else message
