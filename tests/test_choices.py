"""Fixed option values and the "did you mean" hint: one check, one message, whichever command asks."""

import pytest

from bagmar_cli.choices import ExportFormat, Output, PosthocMethod, SearchMetric, did_you_mean
from bagmar_cli.errors import SettingError


def test_did_you_mean_quotes_and_lists_as_asked():
    assert did_you_mean("bagmr", ["bagmar", "ce"]) == " (did you mean 'bagmar'?)"
    assert (
        did_you_mean("cifar", ["cifar10", "cifar100", "digits"], n=3, quote=False)
        == " (did you mean cifar10, cifar100?)"
    )
    assert did_you_mean("imagenet", ["digits"]) == ""


@pytest.mark.parametrize("kind", [ExportFormat, Output, PosthocMethod, SearchMetric])
def test_every_value_parses_from_its_string_and_from_itself(kind):
    for member in kind:
        assert kind.parse(member.value) is member and kind.parse(member) is member
        assert member == member.value and f"{member}" == member.value


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        (PosthocMethod, "tau_norm", "unknown post-hoc method 'tau_norm' (did you mean tau-norm?); choose from pn, "),
        (SearchMetric, "accuracy", "unknown metric 'accuracy'; choose from top1, macro, many, medium, few"),
        (ExportFormat, "tflite", "unknown `format` 'tflite'; choose from onnx, torchscript, safetensors"),
        (Output, "scores", "unknown `output` 'scores'; choose from logits, probabilities"),
    ],
)
def test_an_unknown_value_is_one_usage_error(kind, value, message):
    with pytest.raises(SettingError) as error:
        kind.parse(value)
    assert str(error.value).startswith(message)


def test_parse_optional_passes_none():
    assert PosthocMethod.parse_optional(None) is None
