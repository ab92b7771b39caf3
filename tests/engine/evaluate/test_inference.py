"""engine/evaluate/inference.py: batched outputs of a model over a loader, in split order."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from bagmar_cli.data.images import Undecodable
from bagmar_cli.data.splits import eval_loader
from bagmar_cli.engine.evaluate.inference import compute_outputs
from bagmar_cli.errors import DatasetError
from bagmar_cli.models import Classifier


def _model() -> Classifier:
    torch.manual_seed(0)
    return Classifier(nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Dropout(0.5)), nn.Linear(5, 3))


def test_outputs_equal_a_direct_forward_in_eval_mode_and_keep_training_mode() -> None:
    model = _model()
    images, labels = torch.randn(10, 3, 2, 2), torch.arange(10) % 3
    out = compute_outputs(model, eval_loader(TensorDataset(images, labels), 4), features=True)
    assert model.training  # restored after the eval-mode pass
    model.eval()
    with torch.no_grad():
        assert torch.allclose(out.logits, model(images))
        assert out.features is not None and torch.allclose(out.features, model.features(images))
    assert torch.equal(out.labels, labels)


def test_features_are_absent_unless_asked() -> None:
    model = _model()
    out = compute_outputs(model, eval_loader(TensorDataset(torch.randn(3, 3, 2, 2), torch.zeros(3).long()), 2))
    assert out.features is None and out.logits.shape == (3, 3)


def test_an_empty_split_gives_empty_outputs_with_the_class_count() -> None:
    out = compute_outputs(_model(), eval_loader(TensorDataset(torch.empty(0, 3, 2, 2), torch.empty(0).long()), 4))
    assert out.logits.shape == (0, 3) and out.labels.shape == (0,)


def test_an_undecodable_image_stops_evaluation_naming_it() -> None:
    class Broken(torch.utils.data.Dataset[object]):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int) -> object:
            if index == 1:
                return Undecodable("bad.png", "truncated")
            return torch.zeros(3, 2, 2), 0

    with pytest.raises(DatasetError, match=r"bad\.png"):
        compute_outputs(_model(), eval_loader(Broken(), 2))
