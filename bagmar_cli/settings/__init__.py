"""The one typed settings tree (`schema` over `sections`), its two stages (`stages`), its format version and
migration (`versions`), the sources that fill it in order of precedence (`sources`), the raw trees they merge
(`trees`) and how an error in them reads (`messages`)."""

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
from bagmar_cli.settings.stages import Stage2
from bagmar_cli.settings.trees import flatten_settings
from bagmar_cli.settings.versions import SETTINGS_VERSION, migrate

__all__ = [
    "PRESET_PACKAGE",
    "RESUMABLE",
    "SETTINGS_VERSION",
    "STAGE1_ONLY",
    "DataSettings",
    "EvalSettings",
    "LossSettings",
    "ModelSettings",
    "OptimSettings",
    "ScheduleSettings",
    "Section",
    "Settings",
    "Stage2",
    "TrainSettings",
    "changed_settings",
    "flatten_settings",
    "load_settings",
    "migrate",
    "parse_override",
    "preset_names",
    "read_preset",
    "read_settings_file",
    "validate",
]
