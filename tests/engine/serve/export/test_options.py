"""ExportOptions: strings parsed into enums once, the default output name from the format's suffix."""

from pathlib import Path

import pytest

from bagmar_cli.choices import ExportFormat, Output, PosthocMethod
from bagmar_cli.engine.serve.export import ExportOptions
from bagmar_cli.engine.serve.export.formats import FORMATS
from bagmar_cli.errors import CheckpointError, SettingError


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("onnx", "best.onnx"), ("torchscript", "best.torchscript.pt"), ("safetensors", "best.bundle.safetensors")],
)
def test_default_output_is_beside_the_checkpoint(fmt, name):
    assert ExportOptions(Path("run/best.safetensors"), fmt).out == Path("run") / name


def test_every_format_has_a_distinct_suffix():
    assert set(FORMATS) == set(ExportFormat)
    assert len({f.suffix for f in FORMATS.values()}) == len(FORMATS)


def test_strings_become_enums_and_enums_are_taken_as_they_are():
    opts = ExportOptions(Path("b.safetensors"), "torchscript", method="pn", output="probabilities", batch="4")
    assert (opts.format, opts.method, opts.output, opts.batch) == (
        ExportFormat.TORCHSCRIPT,
        PosthocMethod.PN,
        Output.PROBABILITIES,
        4,
    )
    again = ExportOptions(Path("b.safetensors"), opts.format, method=opts.method, output=opts.output)
    assert (again.format, again.method, again.output, again.batch) == (opts.format, opts.method, opts.output, None)


@pytest.mark.parametrize("batch", ["0", "-2", "many"])
def test_bad_batch_is_a_usage_error(batch):
    with pytest.raises(SettingError, match="`batch`"):
        ExportOptions(Path("b.safetensors"), batch=batch)


def test_a_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is not a checkpoint file"):
        ExportOptions(tmp_path)
