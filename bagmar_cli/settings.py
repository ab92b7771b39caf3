"""The one typed settings tree, and how presets, config files and overrides build it.

Precedence, lowest first: defaults < preset (`--preset NAME|FILE`) < config file (`--config FILE`)
< `--set section.key=value` overrides < explicit command-line flags.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bagmar_cli.choices import did_you_mean
from bagmar_cli.errors import UsageError

PRESET_PACKAGE = "bagmar_cli.presets"
INHERIT_KEY = "inherit"
PRESET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a shipped preset's name: no path, no leading dot
MAX_SETTINGS_FILE = 1 << 20  # 1 MiB: a config or preset file larger than this is refused unread
# the only settings a resume may change: none of them alters the weights
RESUMABLE = ("train.device", "data.num_workers", "train.log_every")
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
    "train.device",
)


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, assignments are validated, floats are finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataSettings(Section):
    dataset: str | None = None  # dataset registry name; None: read from the manifest in `root`
    root: Path | None = None  # prepared dataset directory; None: $BAGMAR_DATA_DIR/<dataset>-lt-imb<imb>
    imb: float = Field(100.0, ge=1.0, allow_inf_nan=False)  # imbalance factor (max/min count) to prepare
    profile: Literal["exp", "step", "as-listed"] = "exp"  # long-tail profile of the train split (as-listed: lists)
    val_per_class: int = Field(0, ge=0)  # held-out validation images per class (0: no val split)
    val_split: str = "auto"  # split used for best-epoch selection; auto: "val" if present, else "test"
    # how training batches are drawn: shuffled, class-balanced, square-root, or class-aware (k images per drawn class)
    sampler: Literal["instance", "class", "sqrt", "class_aware"] = "instance"
    samples_per_class: int = Field(4, ge=1)  # class_aware: consecutive images of each drawn class (the authors' 4)
    # draws in an epoch: len(train), or max_j n_j x classes (the decoupling code's ClassAwareSampler; not "instance")
    epoch_size: Literal["dataset", "max_class"] = "dataset"
    augment_on: Literal["batch", "sample"] = "batch"  # in-memory datasets: whole batches on the device, or per image
    # DataLoader workers; auto: 0 on the batch path, min(8, CPUs - 1) for per-sample work (batches.resolve_workers)
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    random_crop: bool = True  # random crop to the image size after zero padding
    crop_padding: int = Field(4, ge=0)  # padding for the random crop (4 for CIFAR)
    hflip: bool = True  # random horizontal flip (off for digits: flipped digits are other digits)
    autoaugment: bool = False  # torchvision AutoAugment with the CIFAR10 policy
    cutout: int = Field(0, ge=0)  # side of the Cutout square in pixels (0: off; 16 for CIFAR)
    # Image-file datasets (ImageNet-LT, iNaturalist, Places-LT, folders): random_crop is a RandomResizedCrop
    # to the network's input size, hflip as above; AutoAugment and Cutout are the in-memory (CIFAR) recipe's.
    # Folders of small images (`prepare folder` read a side of at most 64 pixels) are padded by crop_padding (in
    # their own pixels) and cropped instead, as in memory: crop_scale_min does not apply to them.
    crop_scale_min: float = Field(0.08, gt=0.0, le=1.0)  # RandomResizedCrop: smallest crop area, as a fraction
    color_jitter: float = Field(0.0, ge=0.0)  # brightness, contrast and saturation jitter (0.4 in the LT recipes)
    randaugment: str | None = None  # timm RandAugment config, e.g. "rand-n2-m10-mstd0.5" (the authors'); None: off
    crop: int | None = Field(None, ge=1)  # image files: side of the square the network sees; None: the manifest's
    max_bad_fraction: float = Field(0.001, ge=0.0, le=1.0)  # image files: undecodable share of an epoch that stops it

    @model_validator(mode="after")
    def _a_permutation_is_one_pass(self) -> DataSettings:
        if self.sampler == "instance" and self.epoch_size != "dataset":
            raise ValueError(
                'epoch_size = "max_class" draws with replacement: it needs sampler = "class", "sqrt" or "class_aware"'
            )
        return self


class ModelSettings(Section):
    backbone: str = "resnet32_cifar"  # any timm model name, or our registered CIFAR ResNets
    pretrained: bool = False  # load timm's pretrained weights (needs the hub, so internet)
    # backbone weights from a local safetensors file (a timm state dict, or a bagmar checkpoint's backbone); offline
    weights: Path | None = None
    head: Literal["linear", "normed"] = "linear"  # classifier: linear, or cosine (LDAM's NormedLinear)
    head_scale: float = Field(1.0, gt=0.0, allow_inf_nan=False)  # normed head: logits = head_scale * cosine
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0)  # dropout before the classifier
    # parameters that do not learn: none, the whole backbone (classifier re-training), or all but its last stage
    freeze: Literal["none", "backbone", "all_but_last_stage"] = "none"
    # a frozen BatchNorm: "eval" keeps its running statistics; "train" lets them drift (the authors' code)
    frozen_bn: Literal["eval", "train"] = "eval"

    @model_validator(mode="after")
    def _scale_needs_a_cosine_head(self) -> ModelSettings:
        if self.head != "normed" and self.head_scale != 1.0:
            raise ValueError('head_scale scales cosines: it needs head = "normed" (or leave it at 1)')
        if self.pretrained and self.weights is not None:
            raise ValueError("pretrained (timm's hub) and weights (a local file) both give the backbone: set one")
        return self


class LossSettings(Section):
    name: str = "ce"  # loss registry name: ce, focal, ldam, balanced_softmax, logit_adjusted, bagmar
    reweight: Literal["none", "cb"] = "none"  # class-balanced re-weighting by effective number
    cb_beta: float = Field(0.9999, ge=0.0, lt=1.0)  # beta of the effective number (Cui et al. 2019)
    reweight_epoch: int = Field(0, ge=0)  # epoch (0-based) from which re-weighting applies (DRW: 160)
    focal_gamma: float = Field(1.0, ge=0.0)  # focusing parameter of the focal loss
    ldam_max_margin: float = Field(0.5, gt=0.0)  # largest LDAM margin (Cao et al. 2019)
    ldam_scale: float = Field(30.0, gt=0.0)  # LDAM logit scale s
    la_tau: float = Field(1.0, ge=0.0)  # logit-adjusted loss temperature (Menon et al. 2021)
    lambda1: float = 1.0  # BaGMar weight of log(theta_j): 1.0 BaGMar, 1.2 GALA
    lambda2: float = 1.0  # BaGMar weight of log(phi_y): 1.0 BaGMar, 0.9 GALA
    eps: float = Field(1e-3, gt=0.0)  # BaGMar epsilon inside the logarithms
    accumulation: Literal["reference", "sum", "ema"] = "reference"  # how BaGMar statistics accumulate
    form: Literal["paper", "reference"] = "paper"  # paper: target logit unadjusted; reference: all
    ema_decay: float = Field(0.99, ge=0.0, lt=1.0)  # decay for accumulation = "ema"


class OptimSettings(Section):
    lr: float = Field(0.1, gt=0.0)  # peak learning rate (after warm-up)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # SGD momentum
    weight_decay: float = Field(5e-4, ge=0.0)  # L2 weight decay
    nesterov: bool = False  # Nesterov momentum
    head_lr: float | None = Field(None, gt=0.0)  # the classifier head's peak learning rate; None: lr
    head_weight_decay: float | None = Field(None, ge=0.0)  # the head's weight decay; None: weight_decay
    # the global batch that lr and head_lr are stated for (a preset's own); None: the run's train.batch_size
    lr_batch: int | None = Field(None, ge=1)
    # when the run's global batch differs from lr_batch: keep the stated lr, or scale lr and head_lr by
    # batch / lr_batch (the linear rule of Goyal et al. 2017)
    lr_scaling: Literal["keep", "linear"] = "keep"


class ScheduleSettings(Section):
    name: Literal["cosine", "step", "constant"] = "cosine"  # decay after warm-up, stepped per epoch
    warmup_epochs: int = Field(1, ge=0)  # epochs at lr * warmup_factor before the decay starts
    warmup_factor: float = Field(0.5, gt=0.0, le=1.0)  # 0.5: the authors' 0.05 in epoch 1, then 0.1
    min_lr: float = Field(0.0, ge=0.0)  # cosine floor
    milestones: list[int] = []  # epochs at which "step" multiplies the lr by gamma
    gamma: float = Field(0.1, gt=0.0)  # "step" decay factor


class TrainSettings(Section):
    epochs: int = Field(200, ge=1)  # training epochs
    batch_size: int = Field(64, ge=1)  # global batch size
    seed: int = Field(0, ge=0)  # seeds torch, numpy and python
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    val_every: int = Field(1, ge=1)  # validate every N epochs (and at the last epoch)
    log_every: int = Field(50, ge=1)  # read the loss from the device every N steps (and at epoch end)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: forward pass under bfloat16 autocast (loss in fp32)
    channels_last: bool = False  # NHWC memory format for the model and its input batches
    compile: bool = False  # torch.compile the model's forward (the loss, backward and SGD step stay eager)
    ema: bool = False  # keep an exponential moving average of the weights (timm ModelEmaV3), validated on
    ema_decay: float = Field(0.9998, ge=0.0, lt=1.0)  # EMA decay per optimiser step


class EvalSettings(Section):
    split: str = "test"  # not read: `bagmar eval --split` chooses (default: the dataset's reported split); kept so
    # that the config.toml files of earlier runs, which record it, still load
    batch_size: int = Field(256, ge=1)  # inference batch size


class Settings(Section):
    description: str = ""  # one line shown by `bagmar presets`
    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    loss: LossSettings = LossSettings()
    optim: OptimSettings = OptimSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    train: TrainSettings = TrainSettings()
    eval: EvalSettings = EvalSettings()
    # Two-stage training: the keys that change stage 1's settings (the rest of this tree) for stage 2, which
    # re-starts from stage 1's backbone (see `stages`). None: one stage.
    stage2: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _stage2_is_a_valid_change(self) -> Settings:
        if self.stage2 is not None:
            self.stages()
        return self

    def stages(self) -> tuple[Settings, Settings | None]:
        """(stage 1, stage 2) as one-stage settings; stage 2 is None for a one-stage run.

        Stage 2 is stage 1 changed by the [stage2] keys, with its backbone from `model.weights`: the file the
        [stage2] table names (stage 1 is then skipped), else left None for the trainer to point at stage 1's
        selected checkpoint. Stage 2 never re-reads stage 1's own source of weights (`pretrained`, `weights`).
        """
        first = self.model_copy(update={"stage2": None})
        if self.stage2 is None:
            return first, None
        changes = self.stage2
        if not changes:
            raise ValueError("[stage2] is empty: give the settings that change for stage 2, or leave it out")
        flat = flatten_settings(changes)
        fixed = sorted(key for key in flat if key in STAGE1_ONLY or key.startswith("stage2."))
        if "description" in changes:
            fixed = ["description", *fixed]
        if fixed:
            raise ValueError(f"stage2.{fixed[0]} cannot change between the stages: set it once, for both")
        tree = _merge(first.model_dump(mode="json", exclude_none=True), {"model": {"pretrained": False}})
        tree["model"].pop("weights", None)
        try:
            second = Settings.model_validate(_merge(tree, changes))
        except ValidationError as exc:
            raise ValueError(_describe(exc, changes, prefix="stage2.")) from None
        return first, second

    @property
    def skips_stage1(self) -> bool:
        """True when [stage2] names the backbone to start from (`model.weights`), so stage 1 does not run."""
        model = (self.stage2 or {}).get("model")
        return isinstance(model, dict) and model.get("weights") is not None

    def to_toml(self) -> str:
        """The settings as TOML text, as written to a run's config.toml."""
        return tomli_w.dumps(self.model_dump(mode="json", exclude_none=True))


def load_settings(
    preset: str | None = None,
    config: str | Path | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    *,
    default_preset: str | None = None,
    base: Settings | None = None,
) -> Settings:
    """Build Settings from the sources in order of precedence (later wins), over `base` (else the defaults).

    `default_preset` (a shipped preset's name, e.g. a dataset's) stands in for `preset` when none is given.
    """
    tree: dict[str, Any] = base.model_dump(mode="json", exclude_none=True) if base is not None else {}
    if preset:
        tree = _merge(tree, read_preset(preset))
    elif default_preset:
        tree = _merge(tree, read_preset(default_preset, by_name=True))
    if config:
        tree = _merge(tree, _read_settings_file(Path(config), "config file"))
    for item in overrides or []:
        tree = _merge(tree, _nest(*parse_override(item)))
    for key, value in (flags or {}).items():
        if value is not None:
            tree = _merge(tree, _nest(key, value))
    return validate(tree)


def validate(tree: dict[str, Any]) -> Settings:
    """Validate a raw settings tree, turning pydantic's errors into one readable line."""
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        raise UsageError(_describe(exc, tree)) from None


def read_settings_file(path: Path, what: str = "config file") -> Settings:
    """Settings from a TOML file (a run's config.toml), with the checks of `--config`."""
    return validate(_read_settings_file(Path(path), what))


def changed_settings(recorded: Settings, given: Settings) -> list[tuple[str, Any, Any]]:
    """(dotted key, recorded value, given value) of every setting that differs, except the description."""
    old, new = flatten_settings(recorded.model_dump(mode="json")), flatten_settings(given.model_dump(mode="json"))
    return [
        (key, old.get(key), new.get(key)) for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)
    ]


def parse_override(item: str) -> tuple[str, Any]:
    """Parse `section.key=value`; the value is read as TOML where it parses, else as a string."""
    if "=" not in item:
        raise UsageError(f"--set {item!r}: expected section.key=value")
    key, raw = (part.strip() for part in item.split("=", 1))
    if not key:
        raise UsageError(f"--set {item!r}: missing key before '='")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    except RecursionError:
        raise UsageError(f"--set {key}: the value is nested too deeply") from None
    return key, value


# -- presets -----------------------------------------------------------------------------------


def preset_names() -> list[str]:
    """Names of the presets shipped with the package, sorted."""
    root = importlib.resources.files(PRESET_PACKAGE)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def read_preset(name_or_file: str, *, by_name: bool = False) -> dict[str, Any]:
    """A preset's raw tree, following `inherit = "other"` chains; `by_name`: a shipped preset only, never a file."""
    return _resolve(name_or_file, seen=(), by_name=by_name)


def _resolve(name_or_file: str, seen: tuple[str, ...], by_name: bool) -> dict[str, Any]:
    if name_or_file in seen:
        raise UsageError(f"preset {name_or_file!r} inherits from itself ({' -> '.join(seen)})")
    tree = _read_settings_file(_preset_path(name_or_file, by_name), "preset")
    parent = tree.pop(INHERIT_KEY, None)
    if parent is None:
        return tree
    return _merge(_resolve(str(parent), (*seen, name_or_file), by_name), tree)


def _preset_path(name_or_file: str, by_name: bool = False) -> Path:
    path = Path(name_or_file)
    if not by_name and (path.suffix == ".toml" or os.sep in name_or_file or path.exists()):
        if not path.exists():
            raise UsageError(f"preset file {name_or_file!r} not found")
        return path  # a directory, device or FIFO is refused by _read_settings_file without being read
    packaged = importlib.resources.files(PRESET_PACKAGE) / f"{name_or_file}.toml"
    if not PRESET_NAME.fullmatch(name_or_file) or not packaged.is_file():
        names = preset_names()
        hint = _did_you_mean(name_or_file, names)
        raise UsageError(f"unknown preset {name_or_file!r}{hint}; `bagmar presets` lists them")
    return Path(str(packaged))


def _read_settings_file(path: Path, what: str) -> dict[str, Any]:
    """The TOML tree of a regular file of at most MAX_SETTINGS_FILE bytes (never a device, FIFO or huge file)."""
    name = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UsageError(f"{what} {name!r} not found") from None
    except OSError as exc:
        raise UsageError(f"{what} {name!r} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{what} {name!r} is a directory, expected a TOML file")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{what} {name!r} is not a regular file, expected a TOML file")
    if info.st_size > MAX_SETTINGS_FILE:
        raise UsageError(f"{what} {name!r} is {info.st_size} bytes; settings files are at most 1 MiB")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SETTINGS_FILE + 1)
        if len(data) > MAX_SETTINGS_FILE:  # grew since stat
            raise UsageError(f"{what} {name!r} is larger than 1 MiB; settings files are at most 1 MiB")
        return tomllib.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} {name!r} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{what} {name!r} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(f"{what} {name!r} nests tables or arrays too deeply") from None


# -- helpers -----------------------------------------------------------------------------------


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    *parents, leaf = dotted.split(".")
    tree: dict[str, Any] = {leaf: value}
    for part in reversed(parents):
        tree = {part: tree}
    return tree


def flatten_settings(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A raw settings tree as {"section.key": value}, without the top-level description."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= flatten_settings(value, f"{prefix}{key}.")
        elif key != "description" or prefix:
            flat[f"{prefix}{key}"] = value
    return flat


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _did_you_mean(word: str, choices: list[str]) -> str:
    return did_you_mean(word, choices, cutoff=0.5)


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Settings
    for part in loc:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None or not hasattr(field.annotation, "model_fields"):
            break
        model = field.annotation
    return list(model.model_fields)


def _known_fields(loc: tuple[str, ...]) -> tuple[str, ...]:
    model: Any = Settings
    known: list[str] = []
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            break
        known.append(part)
        model = fields[part].annotation
    return tuple(known) or loc


def _describe(exc: ValidationError, tree: dict[str, Any], prefix: str = "") -> str:
    """One line for the first error; `prefix` goes before every key (the stage2. of a [stage2] change)."""
    error = exc.errors()[0]
    loc = tuple(p for p in error["loc"] if isinstance(p, str))
    if error["type"] != "extra_forbidden":
        loc = _known_fields(loc)  # a union's member ("constrained-int") is no part of the key
    key = prefix + ".".join(loc)
    if error["type"] == "extra_forbidden":
        hint = _did_you_mean(loc[-1], _fields_at(loc[:-1]))
        return f"unknown setting {key!r}{hint}"
    value = error.get("input")
    if error["type"] == "value_error" and isinstance(value, dict):  # a check across a section's keys
        message = error["msg"].removeprefix("Value error, ")
        return f"settings {key}: {message}" if loc else message  # the whole tree's check words its own keys
    return f"setting {key or 'settings'} = {value!r}: {error['msg'].lower()}"
