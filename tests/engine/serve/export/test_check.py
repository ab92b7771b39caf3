"""engine/serve/export/check.py: the parity check's verdict on exported against reference outputs."""

from __future__ import annotations

import pytest
import torch

from bagmar_cli.choices import Output
from bagmar_cli.engine.serve.export.check import compare_outputs
from bagmar_cli.errors import BagmarError


def _reference() -> torch.Tensor:
    return torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 4.0]])


def test_equal_outputs_pass_with_the_record() -> None:
    ref = _reference()
    record = compare_outputs(ref + 1e-6, ref, Output.LOGITS, "val")
    assert record["inputs"] == "val" and record["n"] == 3
    assert record["max_abs_diff"] == pytest.approx(1e-6, rel=0.1)


def test_a_flipped_argmax_is_refused() -> None:
    ref = _reference()
    exported = ref.clone()
    exported[0] = torch.tensor([1.0, 2.0, 0.0])  # row 0 now predicts class 1
    with pytest.raises(BagmarError, match="1 different predictions"):
        compare_outputs(exported, ref, Output.LOGITS, "val")


def test_a_difference_beyond_tolerance_is_refused_even_with_the_same_argmax() -> None:
    ref = _reference()
    with pytest.raises(BagmarError, match="0 different predictions"):
        compare_outputs(ref + 1e-3, ref, "logits", "random")


def test_probabilities_use_their_own_tolerance() -> None:
    ref = torch.softmax(_reference(), dim=1)
    assert compare_outputs(ref + 5e-5, ref, Output.PROBABILITIES, "val")["atol"] == 1e-4
    with pytest.raises(BagmarError):
        compare_outputs(ref + 2e-4, ref, Output.PROBABILITIES, "val")
