"""myna.data.prepare.download against a real HTTP server on 127.0.0.1, and safe extraction."""

import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path

import pytest

from myna.data.prepare.download import DownloadError, UnsafeArchiveError, download, extract

sys.path.insert(0, str(Path(__file__).parent))
from loopback_server import LoopbackServer  # noqa: E402

BODY = os.urandom(300_000)
MD5 = hashlib.md5(BODY).hexdigest()
SHA = hashlib.sha256(BODY).hexdigest()


def test_download_verifies_and_never_fetches_a_verified_file_again(tmp_path):
    with LoopbackServer({"/a.tar.gz": BODY}) as server:
        path = download(f"{server.url}/a.tar.gz", tmp_path / "a.tar.gz", md5=MD5, progress=False)
        assert path.read_bytes() == BODY and len(server.requests) == 1
        again = download(f"{server.url}/a.tar.gz", tmp_path / "a.tar.gz", md5=MD5, progress=False)
        assert again == path and len(server.requests) == 1  # no second request
        assert (tmp_path / "a.tar.gz.verified").is_file()


def test_interrupted_download_resumes_with_a_range_request(tmp_path):
    with LoopbackServer({"/big.bin": BODY}) as server:
        server.cut_after = 100_000
        with pytest.raises(DownloadError, match=r"rerun to resume"):
            download(f"{server.url}/big.bin", tmp_path / "big.bin", sha256=SHA, retries=0,
                     progress=False)
        part = tmp_path / "big.bin.part"
        assert part.stat().st_size == 100_000 and not (tmp_path / "big.bin").exists()
        download(f"{server.url}/big.bin", tmp_path / "big.bin", sha256=SHA, progress=False)
        assert server.requests[-1] == ("/big.bin", "bytes=100000-")
        assert (tmp_path / "big.bin").read_bytes() == BODY and not part.exists()


def test_dropped_connection_is_resumed_within_one_call(tmp_path):
    with LoopbackServer({"/big.bin": BODY}) as server:
        server.cut_after = 50_000
        download(f"{server.url}/big.bin", tmp_path / "big.bin", md5=MD5, retries=2, progress=False)
        assert [r for _, r in server.requests] == [None, "bytes=50000-"]
        assert (tmp_path / "big.bin").read_bytes() == BODY


def test_server_that_ignores_range_restarts_from_zero(tmp_path):
    (tmp_path / "f.bin.part").write_bytes(b"garbage-prefix")
    with LoopbackServer({"/f.bin": BODY}) as server:
        server.ignore_range = True
        download(f"{server.url}/f.bin", tmp_path / "f.bin", md5=MD5, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_checksum_mismatch_is_an_error_and_the_file_is_set_aside(tmp_path):
    with LoopbackServer({"/x.tgz": BODY}) as server:
        with pytest.raises(DownloadError, match=r"md5 mismatch for x\.tgz .* expected 0{32}, got "
                                                + MD5):
            download(f"{server.url}/x.tgz", tmp_path / "x.tgz", md5="0" * 32, progress=False)
    assert not (tmp_path / "x.tgz").exists() and (tmp_path / "x.tgz.bad").read_bytes() == BODY


def test_http_error_names_the_url(tmp_path):
    with LoopbackServer({}) as server:
        with pytest.raises(DownloadError, match=r"/missing\.tgz failed: HTTP Error 404"):
            download(f"{server.url}/missing.tgz", tmp_path / "m.tgz", progress=False)


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_extract_writes_members_and_skips_on_rerun(tmp_path):
    archive = tmp_path / "ok.tar.gz"
    _tar(archive, [_file("corpus/a.txt", b"hello"), _file("corpus/sub/b.txt", b"bye")])
    out = extract(archive, tmp_path / "out", progress=False)
    assert (out / "corpus" / "a.txt").read_bytes() == b"hello"
    (out / "corpus" / "a.txt").write_bytes(b"changed")
    extract(archive, tmp_path / "out", progress=False)  # finished before: not extracted again
    assert (out / "corpus" / "a.txt").read_bytes() == b"changed"


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "device", "fifo"])
def test_extract_refuses_members_that_could_escape(tmp_path, kind):
    if kind == "dotdot":
        bad = _file("corpus/../../evil.txt")
    elif kind == "absolute":
        bad = _file(str(tmp_path / "evil.txt"))
    else:
        info = tarfile.TarInfo("corpus/link")
        info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                     "device": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}[kind]
        info.linkname = "/etc/passwd"
        bad = (info, None)
    archive = tmp_path / "bad.tar.gz"
    _tar(archive, [_file("corpus/ok.txt"), bad])
    with pytest.raises(UnsafeArchiveError, match=r"bad\.tar\.gz: member '[^']*(evil|link)"):
        extract(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "corpus" / "link").exists()
