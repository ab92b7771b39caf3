"""Test-time augmentation (functional/tta.py): the views and the average of their logits, by hand."""

import pytest
import torch

from bagmar_cli.functional.tta import TTA_MODES, five_crops, lift_resize, tta_logits, views
from bagmar_cli.settings import EvalSettings


def test_lifts_protocol_resizes_224_to_248_and_scales_with_the_crop():
    assert lift_resize(224) == 248
    assert lift_resize(112) == 124


def test_five_crops_are_the_corners_and_the_centre():
    x = torch.arange(5 * 5, dtype=torch.float).reshape(1, 1, 5, 5)
    crops = five_crops(x, 3)
    assert [c[0, 0, 0, 0].item() for c in crops] == [0.0, 2.0, 10.0, 12.0, 6.0]  # top-left value of each crop
    assert all(c.shape == (1, 1, 3, 3) for c in crops)


def test_a_crop_larger_than_the_image_is_refused():
    with pytest.raises(ValueError, match="at least"):
        five_crops(torch.zeros(1, 1, 4, 4), 5)


def test_flip_doubles_the_views():
    x = torch.randn(2, 3, 6, 6)
    assert len(views(x, crop=4, flip=True)) == 10
    assert len(views(x, flip=True)) == 2 and torch.equal(views(x, flip=True)[1], x.flip(-1))
    assert len(views(x)) == 1


def test_the_logits_are_the_hand_computed_average():
    torch.manual_seed(0)
    weight = torch.randn(3, 2 * 2)
    forward = lambda v: v.reshape(len(v), -1) @ weight.T  # noqa: E731  (a linear model of a 1x2x2 image)
    x = torch.randn(2, 1, 3, 3)
    # the five 2x2 crops of a 3x3 image start at (0,0), (0,1), (1,0), (1,1) and the centre (0,0); then each flipped
    starts = [(0, 0), (0, 1), (1, 0), (1, 1), (0, 0)]
    crops = [x[..., i : i + 2, j : j + 2] for i, j in starts]
    expected = sum(forward(c) + forward(c.flip(-1)) for c in crops) / 10
    torch.testing.assert_close(tta_logits(forward, x, crop=2, flip=True), expected)
    torch.testing.assert_close(tta_logits(forward, x[..., :2, :2]), forward(x[..., :2, :2]))


def test_every_eval_tta_setting_has_its_views():
    choices = EvalSettings.model_fields["tta"].annotation.__args__
    assert set(TTA_MODES) == set(choices)
    x = torch.randn(1, 3, 6, 6)
    counts = {mode: len(views(x, crop=4 if crops else None, flip=flip)) for mode, (crops, flip) in TTA_MODES.items()}
    assert counts == {"none": 1, "flip": 2, "five_crop": 5, "five_crop_flip": 10}
