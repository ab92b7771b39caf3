"""export_model: exports compute what the PyTorch model computes with the same post-hoc method, in every format."""

import json
import shutil
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from bagmar_cli.checkpoint import file_sha256, load_checkpoint, update_metadata
from bagmar_cli.data import load_manifest, load_split
from bagmar_cli.data.augment.tensors import eval_transform
from bagmar_cli.engine.evaluate.evaluator import split_outputs
from bagmar_cli.engine.restore import model_from_checkpoint
from bagmar_cli.engine.serve.export import ExportOptions, check, export_model
from bagmar_cli.engine.serve.export.loaded import load_export
from bagmar_cli.engine.serve.export.sidecar import sidecar_of
from bagmar_cli.errors import BagmarError, SettingError
from bagmar_cli.functional.posthoc import logit_adjust, pn_column_sums, pn_scores, renormalise, tau_norm_logits
from bagmar_cli.functional.priors import class_prior

TAU = {"pn": 1.0, "tau-norm": 1.0, "logit-adjust": 1.5}
METHODS = [None, "pn", "tau-norm", "logit-adjust"]


@pytest.fixture(scope="module")
def val_c(digits_run: Path) -> torch.Tensor:
    """PN's column sums on the val split, as tune-tau records them."""
    return pn_column_sums(split_outputs(digits_run, data=None, split="val", device="cpu").logits)


@pytest.fixture(scope="module")
def test_images(digits_data: Path) -> torch.Tensor:
    """100 normalised images of the digits test split (not the val images the export's check used)."""
    manifest = load_manifest(digits_data)
    return eval_transform(manifest.mean, manifest.std)(load_split(digits_data, "test")[0][::3])


def tuned_copy(digits_run: Path, folder: Path, method: str | None, c: torch.Tensor) -> Path:
    """A copy of the fixture checkpoint, with a tune-tau record for `method` (None: untouched)."""
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = shutil.copy(digits_run, folder / "model.safetensors")
    if method:
        record = {
            "method": method,
            "tau": TAU[method],
            "c": c.tolist() if method == "pn" else None,
            "split": "val",
            "metric": "top1",
        }
        update_metadata(ckpt, {"posthoc": record})
    return Path(ckpt)


@torch.no_grad()
def reference(ckpt_path: Path, images: torch.Tensor, method: str | None, c: torch.Tensor) -> torch.Tensor:
    """functional/posthoc applied to the plain Classifier's outputs: independent of the serving module."""
    ckpt = load_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt)
    logits = model(images)
    if method == "pn":
        return renormalise(pn_scores(logits.double(), c, TAU["pn"])).float()
    if method == "tau-norm":
        return tau_norm_logits(model.features(images), model.head.weight, model.head.bias, TAU["tau-norm"])
    if method == "logit-adjust":
        return logit_adjust(logits, class_prior(torch.tensor(ckpt.meta.train_counts)), TAU["logit-adjust"])
    return logits


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_equals_pytorch_with_posthoc(digits_run, tmp_path, val_c, test_images, fmt, method):
    ckpt = tuned_copy(digits_run, tmp_path, method, val_c)
    out = export_model(ExportOptions(ckpt, fmt))
    sidecar = json.loads(sidecar_of(out).read_text())
    exported = load_export(out, fmt)(test_images)
    expected = reference(ckpt, test_images, method, val_c)
    atol = 1e-5 if method == "pn" else 1e-4
    assert sidecar["output"] == ("probabilities" if method == "pn" else "logits")
    assert (exported - expected).abs().max() <= atol
    assert torch.equal(exported.argmax(1), expected.argmax(1))
    if method in ("tau-norm", "logit-adjust"):  # the method really changes the outputs, so this test can fail
        assert (expected - reference(ckpt, test_images, None, val_c)).abs().max() > 100 * atol


def test_sidecar_describes_the_checkpoint(digits_run, tmp_path, val_c):
    ckpt = tuned_copy(digits_run, tmp_path, "pn", val_c)
    out = export_model(ExportOptions(ckpt, "onnx"))
    sidecar = json.loads(sidecar_of(out).read_text())
    meta = load_checkpoint(ckpt, tensors=False).meta
    assert out == tmp_path / "model.onnx" and sidecar_of(out) == tmp_path / "model.onnx.json"
    assert sidecar["classes"] == meta.classes
    for key in ("input_size", "mean", "std"):
        assert sidecar[key] == getattr(meta.model, key)
    assert sidecar["posthoc"] == {k: getattr(meta.posthoc, k) for k in ("method", "tau", "c")}
    assert sidecar["source_checkpoint_sha256"] == file_sha256(ckpt)
    assert sidecar["sha256"] == file_sha256(out)
    assert (sidecar["format"], sidecar["opset"], sidecar["batch"]) == ("onnx", 17, "dynamic")
    assert (sidecar["input"], sidecar["output"]) == ("images", "probabilities")
    assert (sidecar["channels"], sidecar["resize"]) == ("L", {"height": 8, "width": 8, "filter": "bilinear"})
    assert sidecar["check"]["inputs"] == "val" and sidecar["check"]["max_abs_diff"] <= 1e-5


def test_fixed_batch(digits_run, tmp_path, test_images):
    ckpt = tuned_copy(digits_run, tmp_path, None, None)
    out = export_model(ExportOptions(ckpt, "onnx", batch="3", out=tmp_path / "b3.onnx"))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [3, 1, 8, 8] and json.loads(sidecar_of(out).read_text())["batch"] == 3
    with pytest.raises(Exception):  # noqa: B017 -- onnxruntime raises its own types; a fixed batch really is fixed
        session.run(None, {"images": test_images[:4].numpy()})
    padded = load_export(out, "onnx", batch=3)(test_images[:7])  # 3 + 3 + 1 padded to 3
    assert padded.shape == (7, 10)
    assert (padded - reference(ckpt, test_images[:7], None, None)).abs().max() <= 1e-4


def test_pn_with_given_tau_measures_c_on_val(digits_run, tmp_path, val_c):
    ckpt = tuned_copy(digits_run, tmp_path, None, None)
    out = export_model(ExportOptions(ckpt, "onnx", tau="0.5", method="pn"))
    posthoc = json.loads(sidecar_of(out).read_text())["posthoc"]
    assert posthoc["method"] == "pn" and posthoc["tau"] == 0.5
    assert torch.allclose(torch.tensor(posthoc["c"], dtype=torch.float64), val_c, atol=1e-6)


def test_pn_without_val_split_is_refused(digits_run, tmp_path):
    from bagmar_cli.data import prepare_dataset

    no_val = prepare_dataset("digits", imb=10, val_per_class=0, out=tmp_path / "no-val")
    ckpt = tuned_copy(digits_run, tmp_path / "ckpt", None, None)
    with pytest.raises(SettingError, match="validation split"):
        export_model(ExportOptions(ckpt, "onnx", tau="1", method="pn", data=no_val))
    assert not (tmp_path / "ckpt" / "model.onnx").exists()


def test_failed_check_leaves_nothing(digits_run, tmp_path, monkeypatch):
    ckpt = tuned_copy(digits_run, tmp_path, None, None)
    load = check.load_export
    off_by = lambda *args: lambda images: load(*args)(images) + 1e-3  # noqa: E731
    monkeypatch.setattr(check, "load_export", off_by)
    with pytest.raises(BagmarError, match="disagrees"):
        export_model(ExportOptions(ckpt, "onnx"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_check_falls_back_to_random_inputs(digits_run, tmp_path):
    ckpt = tuned_copy(digits_run, tmp_path, None, None)
    recorded = load_checkpoint(ckpt, tensors=False).meta.dataset.model_dump()
    update_metadata(ckpt, {"dataset": recorded | {"root": str(tmp_path / "gone")}})
    out = export_model(ExportOptions(ckpt, "onnx"))
    assert json.loads(sidecar_of(out).read_text())["check"]["inputs"] == "random"


def test_bundle_holds_weights_and_metadata_only(digits_run, tmp_path):
    ckpt = tuned_copy(digits_run, tmp_path, "logit-adjust", None)
    bundle = load_checkpoint(export_model(ExportOptions(ckpt, "safetensors")))
    source = load_checkpoint(ckpt)
    assert bundle.meta.kind == "bundle" and bundle.meta.posthoc.method == "logit-adjust"
    assert set(bundle.tensors) == {k for k in source.tensors if k.startswith("model.")}
    assert bundle.meta.rng is None and bundle.meta.optimizer_param_groups is None and bundle.meta.scheduler is None
    assert bundle.meta.source_checkpoint_sha256 == source.sha256


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"format": "tflite"}, "`format`"),
        ({"batch": "0"}, "`batch`"),
        ({"output": "scores"}, "`output`"),
        ({"tau": "abc"}, "`tau`"),
        ({"method": "pn"}, "`method`"),
        ({"tau": "1", "method": "pn", "output": "logits"}, "probabilities"),
    ],
)
def test_bad_options_are_usage_errors(digits_run, tmp_path, options, match):
    ckpt = tuned_copy(digits_run, tmp_path, None, None)
    with pytest.raises(SettingError, match=match):
        export_model(ExportOptions(ckpt, **options))
