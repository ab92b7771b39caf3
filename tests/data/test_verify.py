"""verify_images: every listed image must be a regular file inside the root, links resolved."""

from __future__ import annotations

import pytest

from bagmar_cli.data.verify import verify_images
from bagmar_cli.errors import DatasetError


@pytest.fixture
def root(tmp_path):
    for i in range(20):
        (tmp_path / "root" / "c").mkdir(parents=True, exist_ok=True)
        (tmp_path / "root" / "c" / f"{i}.jpg").touch()
    return tmp_path / "root"


def test_a_complete_tree_passes(root):
    verify_images(root, [f"c/{i}.jpg" for i in range(20)], "l.txt")


def test_missing_images_are_counted_and_the_first_five_named(root):
    paths = [f"c/{i}.jpg" for i in range(30)]  # 20 to 29 are absent
    with pytest.raises(DatasetError) as caught:
        verify_images(root, paths, "l.txt", "ROOT/c/*.jpg")
    message = str(caught.value)
    assert message.startswith("l.txt: 10 images (c/20.jpg, c/21.jpg, c/22.jpg, c/23.jpg, c/24.jpg, ...) missing under")
    assert "expected layout: ROOT/c/*.jpg" in message and "c/25.jpg" not in message


def test_a_folder_listed_as_an_image_is_missing(root):
    with pytest.raises(DatasetError, match=r"1 image \(c\) missing"):
        verify_images(root, ["c"], "l.txt")


def test_a_file_link_out_of_the_root_escapes_it(root, tmp_path):
    (tmp_path / "secret.jpg").touch()
    (root / "c" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    with pytest.raises(DatasetError, match=r"1 image \(c/link.jpg\) under .* resolve outside it"):
        verify_images(root, ["c/0.jpg", "c/link.jpg"], "l.txt")


def test_a_root_reached_through_a_link_is_fine(root, tmp_path):
    (tmp_path / "alias").symlink_to(root)
    verify_images(tmp_path / "alias", ["c/0.jpg"], "l.txt")


def test_a_link_loop_is_an_error(root):
    (root / "c" / "loop.jpg").symlink_to(root / "c" / "loop.jpg")
    with pytest.raises(DatasetError, match=r"1 image \(c/loop.jpg\) .* symbolic link loop"):
        verify_images(root, ["c/loop.jpg"], "l.txt")
