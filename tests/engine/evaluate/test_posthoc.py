"""Which post-hoc method a command applies: --tau auto|none|NUMBER with --method, and the τ-norm head check."""

import shutil
from dataclasses import replace

import pytest
import torch

from bagmar_cli.checkpoint import load_checkpoint, update_metadata
from bagmar_cli.choices import PosthocMethod
from bagmar_cli.engine.evaluate.posthoc import parse_tau, posthoc_scores, require_linear_head, resolve_posthoc
from bagmar_cli.errors import SettingError
from bagmar_cli.functional.posthoc import pn_column_sums, pn_scores


@pytest.fixture
def ckpt(digits_run, tmp_path):
    """The fixture run's checkpoint, with tune-tau's record of logit adjustment at τ 1.5."""
    path = shutil.copy(digits_run, tmp_path / "model.safetensors")
    update_metadata(path, {"posthoc": {"method": "logit-adjust", "tau": 1.5, "c": None, "split": "val"}})
    return load_checkpoint(path)


def test_auto_is_the_recorded_method_none_is_the_raw_logits(ckpt):
    recorded = resolve_posthoc(ckpt, "auto", None)
    assert (recorded.method, recorded.tau, recorded.source) == (PosthocMethod.LOGIT_ADJUST, 1.5, "recorded")
    assert resolve_posthoc(ckpt, "none", None) is None


def test_a_number_defaults_to_pn_and_takes_the_method_as_string_or_enum(ckpt):
    assert resolve_posthoc(ckpt, "0.5", None).method is PosthocMethod.PN
    assert resolve_posthoc(ckpt, "0.5", "tau-norm") == resolve_posthoc(ckpt, "0.5", PosthocMethod.TAU_NORM)


@pytest.mark.parametrize(
    ("tau", "method", "match"),
    [("auto", "pn", "`method` goes with `tau` NUMBER"), ("1", "pm", "unknown post-hoc method 'pm'")],
)
def test_bad_combinations_are_usage_errors(ckpt, tau, method, match):
    with pytest.raises(SettingError, match=match):
        resolve_posthoc(ckpt, tau, method)


@pytest.mark.parametrize(("text", "match"), [("-1", "from 0 to 10"), ("11", "from 0 to 10"), ("inf", "finite")])
def test_tau_out_of_range_is_refused(text, match):
    with pytest.raises(SettingError, match=match):
        parse_tau(text)


def test_pn_without_a_recorded_c_normalises_by_the_evaluated_split(ckpt):
    logits = torch.randn(20, ckpt.meta.model.num_classes, generator=torch.Generator().manual_seed(0))
    posthoc = resolve_posthoc(ckpt, "1", "pn")
    torch.testing.assert_close(
        posthoc_scores(posthoc, ckpt, logits, None), pn_scores(logits, pn_column_sums(logits), 1.0)
    )


def test_tau_norm_needs_a_linear_head(ckpt):
    require_linear_head(ckpt)  # the fixture's head is linear
    normed = ckpt.meta.model_copy(update={"model": ckpt.meta.model.model_copy(update={"head": "normed"})})
    with pytest.raises(SettingError, match="linear classifier head"):
        require_linear_head(replace(ckpt, meta=normed))
