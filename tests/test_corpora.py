"""Corpora: the bundled sample, and the download path against a real HTTP server on loopback."""

import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from multitudes.data.corpora import (SAMPLE_PATH, RemoteCorpus, fetch, resolve, safe_member_name)
from multitudes.errors import UserError

PAYLOAD = b"<mediawiki>" + bytes(range(256)) * 40 + b"</mediawiki>\n"


def spec(payload=PAYLOAD, **kw) -> RemoteCorpus:
    fields = dict(name="tiny8", zip_name="tiny8.zip", member="tiny8", size=len(payload),
                  md5=hashlib.md5(payload).hexdigest(), sha1=hashlib.sha1(payload).hexdigest())
    fields.update(kw)
    return RemoteCorpus(**fields)


def make_zip(member="tiny8", payload=PAYLOAD) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, payload)
    return buf.getvalue()


@pytest.fixture
def server():
    """Serve files from a dict on 127.0.0.1; counts requests per path."""
    files, hits = {}, {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits[self.path] = hits.get(self.path, 0) + 1
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", files, hits
    httpd.shutdown()
    httpd.server_close()


def test_sample_is_bundled_and_verified():
    corpus = resolve("sample")
    assert corpus.path == SAMPLE_PATH and corpus.path.stat().st_size == 3_636_038
    assert corpus.split == "fraction"


def test_download_then_cache_hit(server, tmp_path):
    url, files, hits = server
    files["/tiny8.zip"] = make_zip()
    path = fetch(spec(), tmp_path, url)
    assert path.read_bytes() == PAYLOAD
    assert fetch(spec(), tmp_path, url) == path
    assert hits["/tiny8.zip"] == 1  # the second call did not touch the network
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny8"]  # no temporary files left


def test_environment_base_url_is_used(server, tmp_path, monkeypatch):
    url, files, _ = server
    files["/enwik8.zip"] = make_zip("enwik8")
    monkeypatch.setenv("MULTITUDES_DATA_URL", url)
    monkeypatch.setenv("MULTITUDES_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="has 10,?\\d* bytes, expected 100000000|expected 100000000"):
        resolve("enwik8")  # the served file is tiny: the size check must refuse it
    assert not (tmp_path / "enwik8").exists()


@pytest.mark.parametrize("case, message", [
    ("truncated", "not a valid zip"),
    ("wrong_size", "expected"),
    ("wrong_hash", "fails its checksum"),
    ("missing_member", "does not contain"),
    ("not_found", "HTTP 404"),
])
def test_bad_downloads_leave_nothing_behind(server, tmp_path, case, message):
    url, files, _ = server
    good = make_zip()
    corpus = spec()
    if case == "truncated":
        files["/tiny8.zip"] = good[: len(good) // 2]
    elif case == "wrong_size":
        files["/tiny8.zip"] = make_zip(payload=PAYLOAD + b"x")
    elif case == "wrong_hash":
        files["/tiny8.zip"] = make_zip(payload=PAYLOAD[:-1] + b"?")
    elif case == "missing_member":
        files["/tiny8.zip"] = make_zip(member="other")
    with pytest.raises(UserError, match=message):
        fetch(corpus, tmp_path, url)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server(tmp_path):
    with pytest.raises(UserError, match="download of http://127.0.0.1:9/tiny8.zip failed"):
        fetch(spec(), tmp_path, "http://127.0.0.1:9")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["/etc/passwd", "../evil", "a/../../evil", "C:/x", "..\\evil"])
def test_unsafe_member_names_are_refused(name):
    with pytest.raises(UserError, match="unsafe path"):
        safe_member_name(name)


def test_unsafe_member_inside_zip_is_refused(server, tmp_path):
    url, files, _ = server
    files["/tiny8.zip"] = make_zip(member="../tiny8")
    with pytest.raises(UserError, match="unsafe path"):
        fetch(spec(), tmp_path, url)
    assert not (tmp_path.parent / "tiny8").exists()


def test_local_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        resolve(f"file:{tmp_path / 'nope'}")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="is empty"):
        resolve(f"file:{empty}")
    with pytest.raises(UserError, match="not a regular file"):
        resolve(f"file:{tmp_path}")
    with pytest.raises(UserError, match="unknown corpus 'enwik7'"):
        resolve("enwik7")
    good = tmp_path / "good"
    good.write_bytes(b"hello world")
    assert resolve(f"file:{good}").path == Path(good)


def test_an_unreadable_data_file_is_one_clear_error(tmp_path, monkeypatch):
    """Permission denied, simulated: tests may run as root, who reads any file."""
    import builtins
    import errno

    path = tmp_path / "locked.txt"
    path.write_bytes(b"bytes")
    real_open = builtins.open

    def locked_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", locked_open)
    with pytest.raises(UserError, match="cannot be read: Permission denied"):
        resolve(f"file:{path}")
