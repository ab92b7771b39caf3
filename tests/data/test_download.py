"""Downloads: a local HTTP server stands in for the official hosts."""

import hashlib
import http.server
import threading
from functools import partial

import pytest

from bagmar_cli.data.download import Resource, download, fetch
from bagmar_cli.errors import DownloadError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """http://127.0.0.1:PORT/archive.bin serves PAYLOAD."""
    folder = tmp_path_factory.mktemp("www")
    (folder / "archive.bin").write_bytes(PAYLOAD)
    handler = partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_download_checks_the_md5_and_renames_into_place(server, tmp_path):
    dest = tmp_path / "sub" / "archive.bin"
    download(f"{server}/archive.bin", dest, PAYLOAD_MD5)
    assert dest.read_bytes() == PAYLOAD and list(dest.parent.iterdir()) == [dest]


def test_wrong_md5_leaves_nothing_behind(server, tmp_path):
    with pytest.raises(DownloadError, match=f"arrived with MD5 {PAYLOAD_MD5}, expected 0+; try again"):
        download(f"{server}/archive.bin", tmp_path / "archive.bin", "0" * 32)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_is_a_download_error(server, tmp_path):
    with pytest.raises(DownloadError, match=r"could not download .*absent.bin \(HTTP 404 File not found\).*`source`"):
        download(f"{server}/absent.bin", tmp_path / "absent.bin", PAYLOAD_MD5)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_fails_fast(tmp_path, monkeypatch):
    """Fast means one attempt under a connect timeout of seconds: no retry loop, no default (unbounded) timeout."""
    from bagmar_cli.data import download as module

    attempts = []
    real = module.urlopen
    monkeypatch.setattr(module, "urlopen", lambda url, timeout: attempts.append(timeout) or real(url, timeout=timeout))
    with pytest.raises(DownloadError, match=r"could not download .*`source`"):
        download("http://127.0.0.1:9/archive.bin", tmp_path / "archive.bin", PAYLOAD_MD5)
    assert attempts == [module.CONNECT_TIMEOUT] and module.CONNECT_TIMEOUT <= 5


def test_fetch_prefers_the_file_already_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path))
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "archive.bin").write_bytes(b"cached")
    resource = Resource("archive.bin", "http://127.0.0.1:9/archive.bin", PAYLOAD_MD5)
    assert fetch(resource).read_bytes() == b"cached"


def test_fetch_downloads_into_the_data_dir(server, tmp_path, monkeypatch):
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path))
    path = fetch(Resource("archive.bin", f"{server}/archive.bin", PAYLOAD_MD5))
    assert path == tmp_path / "downloads" / "archive.bin" and path.read_bytes() == PAYLOAD
