"""Tau grid parsing and the search, checked against numpy re-computations."""

import numpy as np
import pytest
import torch

from bagmar_cli.engine.evaluate.tau_search import parse_grid, search_tau
from bagmar_cli.errors import SettingError


def test_grid_of_tenths_is_exact():
    grid = parse_grid("0:2:0.1")
    assert len(grid) == 21
    assert grid[-1] == 2.0
    assert grid == [i / 10 for i in range(21)]  # 0.3, not 0.30000000000000004


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1", [1.0]),
        ("0:1:0.3", [0.0, 0.3, 0.6, 0.9]),
        ("0.5:0.5:0.1", [0.5]),
        (" 0 : 1 : 0.5 ", [0.0, 0.5, 1.0]),
        ("0:10:5", [0.0, 5.0, 10.0]),
        ("0:1e0:0.25", [0.0, 0.25, 0.5, 0.75, 1.0]),
    ],
)
def test_grid_examples(spec, expected):
    assert parse_grid(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "abc",
        "0:2",
        "0:2:0",
        "0:2:-0.1",
        "2:0:0.1",
        "nan",
        "0:nan:0.1",
        "0:inf:1",
        "0:1:0.1:3",
        "0::0.1",
        "0:1e9:1e-9",
    ],
)
def test_bad_grids_are_usage_errors(spec):
    with pytest.raises(SettingError) as info:
        parse_grid(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("-5:-1:1", "τ must lie in [0, 10]"),
        ("-1:1:1", "τ must lie in [0, 10]"),
        ("0:1e308:1e307", "τ must lie in [0, 10]"),
        ("0:10.5:0.5", "τ must lie in [0, 10]"),
        ("1e400:2:1", "'1e400' is not a finite number"),
        ("0:1:1e400", "'1e400' is not a finite number"),
    ],
)
def test_grids_outside_the_documented_range_are_refused(spec, message):
    with pytest.raises(SettingError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_grid(spec)


def _data(num=600, classes=12, dim=8, seed=0):
    """Long-tailed counts and logits biased toward the head, so re-balancing changes predictions."""
    gen = torch.Generator().manual_seed(seed)
    counts = (500 * 0.6 ** torch.arange(classes, dtype=torch.float64)).round().long() + 1
    labels = torch.randint(classes, (num,), generator=gen)
    weight = torch.randn(classes, dim, generator=gen, dtype=torch.float64) * (counts[:, None] ** 0.3)
    features = torch.randn(num, dim, generator=gen, dtype=torch.float64)
    features += 1.5 * weight[labels] / weight[labels].norm(dim=1, keepdim=True)  # some signal in the features
    bias = torch.randn(classes, generator=gen, dtype=torch.float64) * 0.1
    logits = features @ weight.T + bias
    return dict(logits=logits, labels=labels, counts=counts, features=features, weight=weight, bias=bias)


def _numpy_top1(method, tau, d):
    """Top-1 accuracy of a method re-computed in numpy, independently of the package."""
    z = d["logits"].numpy()
    if method == "pn":
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        scores = p / p.sum(0) ** tau
    elif method == "logit-adjust":
        n = d["counts"].numpy().astype(float)
        scores = z - tau * np.log(n / n.sum())
    else:
        w = d["weight"].numpy()
        w = w / np.linalg.norm(w, axis=1, keepdims=True) ** tau
        scores = d["features"].numpy() @ w.T + d["bias"].numpy()
    return float((scores.argmax(1) == d["labels"].numpy()).mean())


@pytest.mark.parametrize("method", ["pn", "tau-norm", "logit-adjust"])
def test_rows_match_numpy_and_best_is_the_argmax(method):
    d = _data()
    taus = parse_grid("0:2:0.25")
    result = search_tau(method, taus, **d)
    top1 = [row["top1"] for row in result.rows]
    assert [row["tau"] for row in result.rows] == taus
    assert top1 == pytest.approx([_numpy_top1(method, tau, d) for tau in taus])
    assert top1[0] == float((d["logits"].argmax(1) == d["labels"]).double().mean())  # tau 0: plain accuracy
    assert result.best == result.rows[int(np.argmax(top1))]
    assert set(result.best) == {"tau", "top1", "many", "medium", "few", "macro"}


def test_best_by_macro():
    d = _data()
    result = search_tau("logit-adjust", parse_grid("0:2:0.5"), metric="macro", **d)
    macro = [row["macro"] for row in result.rows]
    assert result.best["macro"] == max(macro) and result.metric == "macro"


def test_pn_returns_the_column_sums():
    d = _data()
    result = search_tau("pn", [0.0, 1.0], **d)
    z = d["logits"].numpy()
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(result.c.numpy(), p.sum(0), rtol=1e-10)
    assert search_tau("logit-adjust", [0.0], **d).c is None


def test_ties_go_to_the_smallest_tau():
    d = _data(classes=3)
    d["logits"] = 100.0 * torch.nn.functional.one_hot(d["labels"], 3).double()  # every tau is perfect
    result = search_tau("logit-adjust", [0.5, 0.0, 0.1], **d)
    assert result.best["tau"] == 0.0


def test_undefined_metric_and_bad_names_are_usage_errors():
    d = _data()
    d["counts"] = torch.full_like(d["counts"], 50)  # every class medium-shot
    with pytest.raises(SettingError, match="few"):
        search_tau("pn", [0.0], metric="few", **d)
    with pytest.raises(SettingError):
        search_tau("pn", [0.0], metric="top5", **d)
    with pytest.raises(SettingError):
        search_tau("temperature", [0.0], **d)
    with pytest.raises(SettingError):
        search_tau("pn", [], **d)
