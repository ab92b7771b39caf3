"""engine/serve/export/loaded.py: any model kind loaded to run, and its checks on what the model gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bagmar_cli.engine.serve.export.loaded import LoadedModel, load_model
from bagmar_cli.errors import BagmarError, SettingError


def test_a_checkpoint_loads_with_its_classes_and_gives_probabilities(digits_run: Path) -> None:
    model = load_model(digits_run, device="cpu")
    assert len(model.classes) == 10 and model.channels in ("L", "RGB")
    probs = model.probabilities(torch.randn(4, *model.input_size))
    assert probs.shape == (4, 10)
    assert torch.allclose(probs.sum(dim=1), torch.ones(4), atol=1e-5) and bool((probs >= 0).all())


def test_outputs_that_do_not_match_the_classes_are_an_error() -> None:
    model = LoadedModel(lambda x: torch.zeros(len(x), 3), ["a", "b"], [1, 2, 2], [0.5], [0.5], "logits", "m.onnx.json")
    with pytest.raises(BagmarError, match="names 2 classes but the model gives \\[3\\] outputs"):
        model.probabilities(torch.zeros(2, 1, 2, 2))


def test_probabilities_pass_through_and_logits_are_softmaxed() -> None:
    logits = torch.tensor([[0.0, 1.0]])
    as_logits = LoadedModel(lambda x: logits, ["a", "b"], [1, 2, 2], [0.5], [0.5], "logits")
    as_probs = LoadedModel(lambda x: logits, ["a", "b"], [1, 2, 2], [0.5], [0.5], "probabilities")
    assert torch.allclose(as_logits.probabilities(torch.zeros(1, 1, 2, 2)), torch.softmax(logits, dim=1))
    assert torch.equal(as_probs.probabilities(torch.zeros(1, 1, 2, 2)), logits)


def test_unreadable_inputs_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match="not found"):
        load_model(tmp_path / "missing.onnx", device="cpu")
    two_channel = LoadedModel(lambda x: x, ["a"], [2, 4, 4], [0.5, 0.5], [0.5, 0.5], "logits")
    with pytest.raises(SettingError, match="2-channel images"):
        _ = two_channel.channels
