"""The served module: the post-hoc methods baked in compute what functional/posthoc computes."""

import torch
from torch import nn

from bagmar_cli.choices import Output, PosthocMethod
from bagmar_cli.engine.evaluate.posthoc import Posthoc
from bagmar_cli.engine.serve.export.serving import build_serving, posthoc_record
from bagmar_cli.functional.posthoc import logit_adjust, pn_scores, renormalise, tau_norm_logits
from bagmar_cli.functional.priors import class_prior

COUNTS = [50, 20, 5]


class Tiny(nn.Module):
    """A Classifier's shape: features then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(4, 6)
        self.head = nn.Linear(6, 3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


X = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))


def test_no_posthoc_serves_the_logits_unchanged():
    model = Tiny()
    serving = build_serving(model, None, COUNTS)
    assert serving.output == Output.LOGITS
    torch.testing.assert_close(serving(X), model(X))


def test_pn_serves_renormalised_pn_scores():
    model, c = Tiny(), torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64)
    serving = build_serving(model, Posthoc(PosthocMethod.PN, 1.0, c), COUNTS)
    assert serving.output == Output.PROBABILITIES
    expected = renormalise(pn_scores(model(X).double(), c, 1.0)).float()
    torch.testing.assert_close(serving(X), expected)
    torch.testing.assert_close(serving(X).sum(1), torch.ones(8))


def test_tau_norm_rescales_a_copy_of_the_head():
    model = Tiny()
    weight = model.head.weight.detach().clone()
    serving = build_serving(model, Posthoc(PosthocMethod.TAU_NORM, 1.0), COUNTS)
    expected = tau_norm_logits(model.features(X), weight, model.head.bias, 1.0)
    torch.testing.assert_close(serving(X), expected)
    assert torch.equal(model.head.weight, weight)  # the caller's model is untouched


def test_logit_adjust_adds_the_prior_as_a_bias():
    model = Tiny()
    serving = build_serving(model, Posthoc(PosthocMethod.LOGIT_ADJUST, 1.5), COUNTS, "probabilities")
    adjusted = logit_adjust(model(X), class_prior(torch.tensor(COUNTS)), 1.5)
    torch.testing.assert_close(serving(X), torch.softmax(adjusted, 1))


def test_the_record_is_plain_json_values():
    record = posthoc_record(Posthoc(PosthocMethod.PN, 0.5, torch.tensor([1.0, 2.0], dtype=torch.float64)))
    assert record == {"method": "pn", "tau": 0.5, "c": [1.0, 2.0]} and type(record["method"]) is str
