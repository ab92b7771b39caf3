"""The settings tree: one typed root over the sections (`sections`), its version and its two stages (`stages`).

Precedence of the sources that fill it is in `sources`; every raw tree is brought to the current version by
`versions.migrate` as it is validated, so the config.toml files and checkpoints of earlier runs still load.
"""

from __future__ import annotations

from typing import Any

import tomli_w
from pydantic import Field, model_validator

from bagmar_cli.settings.sections import (
    DataSettings,
    EvalSettings,
    LossSettings,
    ModelSettings,
    OptimSettings,
    ScheduleSettings,
    Section,
    TrainSettings,
)
from bagmar_cli.settings.stages import STAGE1_ONLY, Stage2, check_stage2_table, split_stages
from bagmar_cli.settings.versions import SETTINGS_VERSION, migrate

# the only settings a resume may change: none of them alters the weights
RESUMABLE = ("train.device", "data.num_workers", "train.log_every")

__all__ = [
    "RESUMABLE",
    "STAGE1_ONLY",
    "DataSettings",
    "EvalSettings",
    "LossSettings",
    "ModelSettings",
    "OptimSettings",
    "ScheduleSettings",
    "Section",
    "Settings",
    "TrainSettings",
]


class Settings(Section):
    settings_version: int = Field(
        SETTINGS_VERSION,
        description="the settings format this tree is written in; older files are migrated when read, newer ones "
        "refused",
    )
    description: str = Field("", description="one line shown by `bagmar presets`")
    data: DataSettings = Field(default_factory=DataSettings, description="the dataset, the sampler and augmentation")
    model: ModelSettings = Field(default_factory=ModelSettings, description="the backbone and classifier head")
    loss: LossSettings = Field(default_factory=LossSettings, description="the training loss and its parameters")
    optim: OptimSettings = Field(default_factory=OptimSettings, description="the optimiser")
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings, description="the learning-rate schedule")
    train: TrainSettings = Field(default_factory=TrainSettings, description="the training run")
    eval: EvalSettings = Field(default_factory=EvalSettings, description="evaluation")
    stage2: Stage2 | None = Field(
        None,
        description="two-stage training: the keys that change stage 1's settings (the rest of this tree) for stage 2, "
        "which re-starts from stage 1's selected backbone; unset: one stage",
    )

    @model_validator(mode="before")
    @classmethod
    def _current_version(cls, tree: Any) -> Any:
        """A raw tree is migrated to the current version, and its [stage2] table checked as written."""
        if not isinstance(tree, dict):
            return tree
        tree = migrate(tree)
        check_stage2_table(tree.get("stage2"))
        return tree

    @model_validator(mode="after")
    def _stage2_is_a_valid_change(self) -> Settings:
        if self.stage2 is not None:
            self.stages()
        return self

    def stages(self) -> tuple[Settings, Settings | None]:
        """(stage 1, stage 2) as one-stage settings; stage 2 is None for a one-stage run (`stages.split_stages`)."""
        return split_stages(self)

    @property
    def skips_stage1(self) -> bool:
        """True when [stage2] names the backbone to start from (`model.weights`), so stage 1 does not run."""
        return self.stage2 is not None and self.stage2.weights is not None

    def to_toml(self) -> str:
        """The settings as TOML text, as written to a run's config.toml."""
        return tomli_w.dumps(self.model_dump(mode="json", exclude_none=True))
