"""`model.pretrained = true` where the hub cannot be reached: one Error line naming `model.weights`, the offline
alternative, instead of a minute of retries (the hub is made unreachable, whatever network the machine has)."""

from __future__ import annotations

import pytest
from support.bad_input import assert_one_error_line

from bagmar_cli.models import pretrained


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """No weights in huggingface_hub's cache (nor in torch hub's, for timm's URL fallback)."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def _train_pretrained_test_vit(cli, data, out, monkeypatch):
    """timm's tiny test_vit, pretrained, on digits (its 160x160 input-size check is passed by, to reach the hub)."""
    monkeypatch.setattr("bagmar_cli.engine.train.recipe.check_input_size", lambda *a, **k: None)
    return cli(
        "train", "--data", data, "--out", out, "--epochs", "1", "--device", "cpu",
        "--set", "model.backbone=test_vit", "--set", "model.pretrained=true",
    )  # fmt: skip


def test_an_unreachable_hub_is_one_error_naming_model_weights(cli, digits_data, tmp_path, monkeypatch, empty_cache):
    """The probe's host is in the .invalid domain, which never resolves: the same path as a machine offline."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setattr(pretrained, "hub_endpoint", lambda: "https://hub.bagmar-test.invalid")
    outcome = _train_pretrained_test_vit(cli, digits_data, tmp_path / "run", monkeypatch)
    line = assert_one_error_line(outcome, 1, "model.pretrained = true needs timm's weights for 'test_vit'")
    assert "cannot be reached and they are not in the local cache" in line
    assert "set model.weights = FILE" in line
    assert not (tmp_path / "run").exists()


def test_hf_hub_offline_is_honoured_without_a_probe(cli, digits_data, tmp_path, monkeypatch, empty_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_probe(*args: object, **kwargs: object) -> bool:
        raise AssertionError("offline mode must not try the network")

    monkeypatch.setattr(pretrained, "hub_reachable", no_probe)
    outcome = _train_pretrained_test_vit(cli, digits_data, tmp_path / "run", monkeypatch)
    assert_one_error_line(outcome, 1, "is offline or cannot be reached", "set model.weights = FILE")


def test_the_probe_reports_an_unresolvable_host_as_unreachable():
    assert pretrained.hub_reachable("https://hub.bagmar-test.invalid", timeout=1.0) is False
