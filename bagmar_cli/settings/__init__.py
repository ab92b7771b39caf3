"""The one typed settings tree (`schema`), the sources that fill it in order of precedence (`sources`), the raw
trees they merge (`trees`) and how an error in them reads (`messages`)."""

from bagmar_cli.settings.schema import (
    RESUMABLE,
    STAGE1_ONLY,
    DataSettings,
    EvalSettings,
    LossSettings,
    ModelSettings,
    OptimSettings,
    ScheduleSettings,
    Section,
    Settings,
    TrainSettings,
)
from bagmar_cli.settings.sources import (
    PRESET_PACKAGE,
    changed_settings,
    load_settings,
    parse_override,
    preset_names,
    read_preset,
    read_settings_file,
    validate,
)
from bagmar_cli.settings.trees import flatten_settings

__all__ = [
    "PRESET_PACKAGE",
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
    "changed_settings",
    "flatten_settings",
    "load_settings",
    "parse_override",
    "preset_names",
    "read_preset",
    "read_settings_file",
    "validate",
]
