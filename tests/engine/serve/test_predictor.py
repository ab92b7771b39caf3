"""Finding and reading images, top-k, and one entry per image whatever the files hold."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bagmar_cli.engine.serve.export.loaded import LoadedModel
from bagmar_cli.engine.serve.predictor import find_images, predict_images, read_image, top_k
from bagmar_cli.errors import SettingError


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_find_images_recurses_sorted_and_keeps_named_files(tmp_path):
    pixels = np.zeros((8, 8), np.uint8)
    b, a, nested = (write_png(tmp_path / "d" / name, pixels) for name in ("b.png", "a.PNG", "sub/c.jpg"))
    (tmp_path / "d" / "notes.txt").write_text("not an image")
    named = tmp_path / "other.dat"
    named.write_bytes(b"x")
    assert find_images([tmp_path / "d", named]) == [a, b, nested, named]


@pytest.mark.parametrize("setup", ["empty folder", "missing path"])
def test_no_images_is_a_usage_error(tmp_path, setup):
    target = tmp_path / "images"
    if setup == "empty folder":
        target.mkdir()
    with pytest.raises(SettingError):
        find_images([target])


def test_read_image_converts_and_resizes_bilinear(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (16, 12, 3), dtype=np.uint8)
    path = write_png(tmp_path / "rgb.png", rgb)
    expected = np.asarray(Image.fromarray(rgb).convert("L").resize((8, 8), Image.Resampling.BILINEAR))
    image = read_image(path, "L", 8, 8)
    assert image.dtype == torch.uint8 and image.shape == (1, 8, 8)
    assert np.array_equal(image[0].numpy(), expected)
    assert read_image(path, "RGB", 16, 12).permute(1, 2, 0).numpy().tolist() == rgb.tolist()  # same size: untouched


def test_top_k_is_sorted_and_capped_at_the_classes():
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    ranked = top_k(probs, ["a", "b", "c"], 5)
    assert [[t["class"] for t in row] for row in ranked] == [["b", "c", "a"], ["a", "c", "b"]]
    assert ranked[0][0] == {"class": "b", "index": 1, "score": pytest.approx(0.6)}


def test_unreadable_files_get_errors_and_the_rest_results(tmp_path, monkeypatch):
    for i in range(3):
        write_png(tmp_path / f"{i}.png", np.full((8, 8), 100 * i, np.uint8))
    (tmp_path / "1b-garbage.png").write_bytes(b"not a png at all")
    whole = (tmp_path / "0.png").read_bytes()
    (tmp_path / "2b-truncated.png").write_bytes(whole[: len(whole) // 2])
    mean_pixel = lambda x: torch.stack([x.mean((1, 2, 3)) - 0.5, 0.5 - x.mean((1, 2, 3))], dim=1)  # noqa: E731
    model = LoadedModel(mean_pixel, ["bright", "dark"], [1, 8, 8], [0.0], [1.0], "logits")
    monkeypatch.setattr("bagmar_cli.engine.serve.predictor.load_model", lambda path, device, tta=None: model)
    entries = list(predict_images(Path("model.onnx"), [tmp_path], k=2, batch_size=2))
    assert [Path(e["path"]).name for e in entries] == ["0.png", "1.png", "1b-garbage.png", "2.png", "2b-truncated.png"]
    assert [("error" in e) for e in entries] == [False, False, True, False, True]
    assert entries[0]["top_k"][0]["class"] == "dark" and entries[3]["top_k"][0]["class"] == "bright"
    assert sum(t["score"] for t in entries[1]["top_k"]) == pytest.approx(1.0)
