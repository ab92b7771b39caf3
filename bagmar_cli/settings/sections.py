"""The sections of the settings tree, each field with the description the docs render.

The root (`schema.Settings`) holds one of each; `stages.Stage2` holds a partial copy of each for stage 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, assignments are validated, floats are finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataSettings(Section):
    dataset: str | None = Field(None, description="dataset registry name; None: read from the manifest in `root`")
    root: Path | None = Field(
        None,
        description="prepared dataset directory; None: $BAGMAR_DATA_DIR/<dataset>-lt-imb<imb>",
    )
    imb: float = Field(100.0, ge=1.0, allow_inf_nan=False, description="imbalance factor (max/min count) to prepare")
    profile: Literal["exp", "step", "as-listed"] = Field(
        "exp",
        description="long-tail profile of the train split (as-listed: lists)",
    )
    val_per_class: int = Field(0, ge=0, description="held-out validation images per class (0: no val split)")
    val_split: str = Field(
        "auto",
        description='split used for best-epoch selection; auto: "val" if present, else "test"',
    )
    sampler: Literal["instance", "class", "sqrt", "class_aware"] = Field(
        "instance",
        description="how training batches are drawn: shuffled, class-balanced, square-root, or class-aware "
        "(k images per drawn class)",
    )
    samples_per_class: int = Field(
        4,
        ge=1,
        description="class_aware: consecutive images of each drawn class (the authors' 4)",
    )
    epoch_size: Literal["dataset", "max_class"] = Field(
        "dataset",
        description="draws in an epoch: len(train), or max_j n_j x classes (the decoupling code's "
        'ClassAwareSampler; not "instance")',
    )
    augment_on: Literal["batch", "sample"] = Field(
        "batch",
        description="in-memory datasets: whole batches on the device, or per image",
    )
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto",
        description="DataLoader workers; auto: 0 on the batch path, min(8, CPUs - 1) for per-sample work "
        "(batches.resolve_workers)",
    )
    random_crop: bool = Field(True, description="random crop to the image size after zero padding")
    crop_padding: int = Field(4, ge=0, description="padding for the random crop (4 for CIFAR)")
    hflip: bool = Field(True, description="random horizontal flip (off for digits: flipped digits are other digits)")
    autoaugment: bool = Field(False, description="torchvision AutoAugment with the CIFAR10 policy")
    cutout: int = Field(0, ge=0, description="side of the Cutout square in pixels (0: off; 16 for CIFAR)")
    # Image-file datasets (ImageNet-LT, iNaturalist, Places-LT, folders): random_crop is a RandomResizedCrop
    # to the network's input size, hflip as above; AutoAugment and Cutout are the in-memory (CIFAR) recipe's.
    # Folders of small images (`prepare folder` read a side of at most 64 pixels) are padded by crop_padding (in
    # their own pixels) and cropped instead, as in memory: crop_scale_min does not apply to them.
    crop_scale_min: float = Field(
        0.08,
        gt=0.0,
        le=1.0,
        description="RandomResizedCrop: smallest crop area, as a fraction",
    )
    color_jitter: float = Field(
        0.0,
        ge=0.0,
        description="brightness, contrast and saturation jitter (0.4 in the LT recipes)",
    )
    randaugment: str | None = Field(
        None,
        description='timm RandAugment config, e.g. "rand-n2-m10-mstd0.5" (the authors\'); None: off',
    )
    crop: int | None = Field(
        None,
        ge=1,
        description="image files: side of the square the network sees; None: the manifest's",
    )
    max_bad_fraction: float = Field(
        0.001,
        ge=0.0,
        le=1.0,
        description="image files: undecodable share of an epoch that stops it",
    )

    @model_validator(mode="after")
    def _a_permutation_is_one_pass(self) -> DataSettings:
        if self.sampler == "instance" and self.epoch_size != "dataset":
            raise ValueError(
                'epoch_size = "max_class" draws with replacement: it needs sampler = "class", "sqrt" or "class_aware"'
            )
        return self


class ModelSettings(Section):
    backbone: str = Field("resnet32_cifar", description="any timm model name, or our registered CIFAR ResNets")
    pretrained: bool = Field(False, description="load timm's pretrained weights (needs the hub, so internet)")
    weights: Path | None = Field(
        None,
        description="backbone weights from a local safetensors file (a timm state dict, or a bagmar checkpoint's "
        "backbone); offline",
    )
    head: Literal["linear", "normed"] = Field(
        "linear",
        description="classifier: linear, or cosine (LDAM's NormedLinear)",
    )
    head_scale: float = Field(1.0, gt=0.0, allow_inf_nan=False, description="normed head: logits = head_scale * cosine")
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the classifier")
    freeze: Literal["none", "backbone", "all_but_last_stage"] = Field(
        "none",
        description="parameters that do not learn: none, the whole backbone (classifier re-training), "
        "or all but its last stage",
    )
    frozen_bn: Literal["eval", "train"] = Field(
        "eval",
        description='a frozen BatchNorm: "eval" keeps its running statistics; "train" lets them drift (the authors\' '
        "code)",
    )
    # fine-tuning a pretrained backbone (models/finetune.py, head_init.py, preprocess.py; docs/finetune.md)
    peft: Literal["none", "lora", "adaptformer"] = Field(
        "none",
        description="LoRA (peft, on the linears lora_targets names) or AdaptFormer (LIFT's scaled bottleneck MLP "
        "beside each block's MLP): base weights frozen",
    )
    peft_rank: int | None = Field(
        None,
        ge=1,
        description="LoRA rank / AdaptFormer width; None: LoRA 8 (our choice: under 1 % of a ViT-B trains), "
        "AdaptFormer LIFT's 2^floor(log2(classes / (2 blocks))), >= 1",
    )
    lora_targets: list[Literal["qkv", "proj", "fc1", "fc2"]] = Field(
        ["qkv", "proj"],
        min_length=1,
        description="LoRA: the linears adapted in each block: attention (qkv, proj; a ViT's) and MLP (fc1, fc2; "
        "ConvNeXt has only these)",
    )
    lora_alpha: float = Field(1.0, gt=0.0, description="LoRA update (alpha / rank) B A x; 1: LIFT's 1 / rank")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on LoRA's input (peft's default 0)")
    adaptformer_scale: float = Field(1.0, description="AdaptFormer's learned output scale, initially (LIFT's 1)")
    train_norms: bool = Field(False, description="also train the backbone's norm layers (peft or freeze set)")
    train_biases: bool = Field(False, description="also train the backbone's biases (BitFit; peft or freeze set)")
    features: Literal["pooled", "projected"] = Field(
        "pooled",
        description="what the head sees: the backbone's pooled features, or those passed through its own pretrained "
        "head (a CLIP image tower's projection into the text space, 768 -> 512 for ViT-B/16; frozen under peft)",
    )
    head_init: Literal["random", "class_mean", "text"] = Field(
        "random", description="normed head: random, each class's mean feature, or CLIP text features of its name"
    )
    text_model: str = Field("ViT-B-16", description="text head: the open_clip model whose text tower is used")
    text_pretrained: str = Field("openai", description="text head: open_clip's pretrained tag, from its hub")
    text_weights: Path | None = Field(None, description="text head: a local open_clip weights file (offline)")
    text_prompt: str = Field("a photo of a {}.", description="text head: the prompt; {} is the class name (CLIP's)")

    @model_validator(mode="after")
    def _scale_needs_a_cosine_head(self) -> ModelSettings:
        if self.head != "normed" and self.head_scale != 1.0:
            raise ValueError('head_scale scales cosines: it needs head = "normed" (or leave it at 1)')
        if self.pretrained and self.weights is not None:
            raise ValueError("pretrained (timm's hub) and weights (a local file) both give the backbone: set one")
        return self

    @model_validator(mode="after")
    def _finetuning_is_consistent(self) -> ModelSettings:
        if self.peft != "none" and self.freeze != "none":
            raise ValueError(f'peft = "{self.peft}" freezes the base weights itself: leave freeze = "none"')
        if self.peft == self.freeze == "none" and (self.train_norms or self.train_biases):
            raise ValueError("train_norms and train_biases add to what peft or freeze leaves trainable: set one")
        if self.head_init != "random" and self.head != "normed":
            raise ValueError(f'head_init = "{self.head_init}" writes a cosine head: it needs head = "normed"')
        if self.text_weights is not None and self.head_init != "text":
            raise ValueError('text_weights gives head_init = "text" its text tower: set both, or neither')
        if "{}" not in self.text_prompt:
            raise ValueError('text_prompt needs "{}" where the class name goes')
        return self


class LossSettings(Section):
    name: str = Field("ce", description="loss registry name: ce, focal, ldam, balanced_softmax, logit_adjusted, bagmar")
    reweight: Literal["none", "cb"] = Field("none", description="class-balanced re-weighting by effective number")
    cb_beta: float = Field(0.9999, ge=0.0, lt=1.0, description="beta of the effective number (Cui et al. 2019)")
    reweight_epoch: int = Field(0, ge=0, description="epoch (0-based) from which re-weighting applies (DRW: 160)")
    focal_gamma: float = Field(1.0, ge=0.0, description="focusing parameter of the focal loss")
    ldam_max_margin: float = Field(0.5, gt=0.0, description="largest LDAM margin (Cao et al. 2019)")
    ldam_scale: float = Field(30.0, gt=0.0, description="LDAM logit scale s")
    la_tau: float = Field(1.0, ge=0.0, description="logit-adjusted loss temperature (Menon et al. 2021)")
    lambda1: float = Field(1.0, description="BaGMar weight of log(theta_j): 1.0 BaGMar, 1.2 GALA")
    lambda2: float = Field(1.0, description="BaGMar weight of log(phi_y): 1.0 BaGMar, 0.9 GALA")
    eps: float = Field(1e-3, gt=0.0, description="BaGMar epsilon inside the logarithms")
    accumulation: Literal["reference", "sum", "ema"] = Field(
        "reference",
        description="how BaGMar statistics accumulate",
    )
    form: Literal["paper", "reference"] = Field("paper", description="paper: target logit unadjusted; reference: all")
    ema_decay: float = Field(0.99, ge=0.0, lt=1.0, description='decay for accumulation = "ema"')
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="every loss: this weight of the target spread over classes"
    )


class OptimSettings(Section):
    name: Literal["sgd", "adamw"] = Field("sgd", description="timm's create_optimizer_v2: SGD with momentum, or AdamW")
    lr: float = Field(0.1, gt=0.0, description="peak learning rate (after warm-up)")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum")
    weight_decay: float = Field(5e-4, ge=0.0, description="L2 weight decay")
    nesterov: bool = Field(False, description="Nesterov momentum")
    head_lr: float | None = Field(None, gt=0.0, description="the classifier head's peak learning rate; None: lr")
    head_weight_decay: float | None = Field(None, ge=0.0, description="the head's weight decay; None: weight_decay")
    lr_batch: int | None = Field(
        None,
        ge=1,
        description="the global batch that lr and head_lr are stated for (a preset's own); None: the run's "
        "train.batch_size",
    )
    lr_scaling: Literal["keep", "linear"] = Field(
        "keep",
        description="when the run's global batch differs from lr_batch: keep the stated lr, or scale lr and head_lr by "
        "batch / lr_batch (the linear rule of Goyal et al. 2017)",
    )
    layer_decay: float | None = Field(
        None, gt=0.0, le=1.0, description="lr x this per backbone layer down (timm's); None: off"
    )
    clip_grad: float | None = Field(
        None, gt=0.0, description="clip the gradients' global L2 norm to this each step; None: off"
    )


class ScheduleSettings(Section):
    name: Literal["cosine", "step", "constant"] = Field(
        "cosine", description="decay after warm-up, stepped per optimiser step"
    )
    warmup_epochs: int = Field(1, ge=0, description="epochs (their steps, at most half the run) at lr * warmup_factor")
    warmup_factor: float = Field(0.5, gt=0.0, le=1.0, description="0.5: the authors' 0.05 in epoch 1, then 0.1")
    min_lr: float = Field(0.0, ge=0.0, description="cosine floor, reached at the run's last step")
    milestones: list[int] = Field([], description='epochs at which "step" multiplies the lr by gamma')
    gamma: float = Field(0.1, gt=0.0, description='"step" decay factor')


class TrainSettings(Section):
    epochs: int = Field(200, ge=1, description="training epochs")
    batch_size: int = Field(64, ge=1, description="global batch size")
    seed: int = Field(0, ge=0, description="seeds torch, numpy and python")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    val_every: int = Field(1, ge=1, description="validate every N epochs (and at the last epoch)")
    log_every: int = Field(50, ge=1, description="read the loss from the device every N steps (and at epoch end)")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="bf16: forward pass under bfloat16 autocast (loss in fp32)",
    )
    channels_last: bool = Field(False, description="NHWC memory format for the model and its input batches")
    compile: bool = Field(
        False,
        description="torch.compile the model's forward (the loss, backward and SGD step stay eager)",
    )
    ema: bool = Field(
        False,
        description="keep an exponential moving average of the weights (timm ModelEmaV3), validated on",
    )
    ema_decay: float = Field(0.9998, ge=0.0, lt=1.0, description="EMA decay per optimiser step")
    mixup_alpha: float = Field(
        0.0, ge=0.0, description="timm Mixup: blend image pairs by lambda ~ Beta(alpha, alpha); 0: off"
    )
    cutmix_alpha: float = Field(
        0.0, ge=0.0, description="timm CutMix: paste a box of the pair; 0: off (both on: one per batch)"
    )


class EvalSettings(Section):
    batch_size: int = Field(256, ge=1, description="inference batch size")
    tta: Literal["none", "flip", "five_crop", "five_crop_flip"] = Field(
        "none", description="test-time views, logits averaged: flip, LIFT's five crops (248 -> 224), or both"
    )
