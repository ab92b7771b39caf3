"""Test-time augmentation in `bagmar eval`: the logits are the mean of the model's logits over the views, computed
here by hand (slices and flips of the batch), and the report names the views it used."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.data import load_manifest, load_split
from bagmar_cli.data.augment.tensors import eval_transform
from bagmar_cli.engine.evaluate.evaluator import split_outputs
from bagmar_cli.engine.restore import model_from_checkpoint
from bagmar_cli.errors import SettingError

N = 12  # images of the small batch computed by hand


@pytest.fixture(scope="module")
def batch(digits_data: Path) -> torch.Tensor:
    """The first N test images of digits (8x8 grey), normalised as eval normalises them."""
    manifest = load_manifest(digits_data)
    return eval_transform(manifest.mean, manifest.std)(load_split(digits_data, "test")[0][:N])


def hand_views(x: torch.Tensor, five: bool, flip: bool) -> list[torch.Tensor]:
    """LIFT's views of an 8x8 batch: upsampled to round(8 * 248 / 224) = 9, the four 8x8 corners and the centre
    (offset (9 - 8) // 2 = 0), each also mirrored."""
    if five:
        big = functional.interpolate(x, size=(9, 9), mode="bilinear", align_corners=False)
        base = [big[..., :8, :8], big[..., :8, 1:], big[..., 1:, :8], big[..., 1:, 1:], big[..., :8, :8]]
    else:
        base = [x]
    return base + [torch.flip(view, dims=[3]) for view in base] if flip else base


@pytest.mark.parametrize(
    ("mode", "five", "flip", "views"),
    [("flip", False, True, 2), ("five_crop", True, False, 5), ("five_crop_flip", True, True, 10)],
)
@torch.no_grad()
def test_tta_logits_are_the_hand_computed_mean_over_the_views(digits_run, batch, mode, five, flip, views):
    model = model_from_checkpoint(load_checkpoint(digits_run))
    by_hand = hand_views(batch, five, flip)
    assert len(by_hand) == views
    expected = torch.stack([model(view) for view in by_hand]).mean(0)
    outputs = split_outputs(digits_run, data=None, split="test", device="cpu", tta=mode)
    assert outputs.tta == mode
    torch.testing.assert_close(outputs.logits[:N], expected, atol=1e-5, rtol=1e-5)
    plain = split_outputs(digits_run, data=None, split="test", device="cpu", tta="none").logits[:N]
    assert not torch.allclose(plain, expected), "the views change the logits"


def test_the_default_is_the_checkpoints_eval_tta(digits_run):
    assert load_checkpoint(digits_run).meta.settings.eval.tta == "none"
    assert split_outputs(digits_run, data=None, split="test", device="cpu").tta == "none"


def test_an_unknown_mode_is_a_setting_error(digits_run):
    with pytest.raises(SettingError, match=r"`tta` 'mirror': choose from none, flip, five_crop, five_crop_flip"):
        split_outputs(digits_run, data=None, split="test", device="cpu", tta="mirror")


def test_the_eval_json_names_the_views(cli, digits_run):
    flipped = cli("eval", digits_run, "--tta", "flip", "--json", "--no-plots", "--device", "cpu")
    assert flipped.code == 0, flipped.err
    assert flipped.json()["tta"] == "flip" and "TTA flip" in flipped.err
    plain = cli("eval", digits_run, "--json", "--no-plots", "--device", "cpu")
    assert plain.json()["tta"] == "none"
    assert plain.json()["top1"] != flipped.json()["top1"] or plain.json()["nll"] != flipped.json()["nll"]
    bad = cli("eval", digits_run, "--tta", "mirror", "--no-plots")
    assert bad.code == 2 and "--tta 'mirror': choose from" in bad.err
