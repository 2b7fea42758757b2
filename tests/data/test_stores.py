"""myna.data.stores: URLs, the cache layout, reading from a real S3 server (moto) and through the
AIStore SDK (a local stand-in for its object API), retries, and rank-0 caching."""

import io
import json
import os
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from myna.data import stores
from myna.data.stores import RankInfo, StoreError

sys.path.insert(0, str(Path(__file__).parent))
from loopback_server import LoopbackServer  # noqa: E402
from store_servers import AISStandIn, S3Server  # noqa: E402

pytest.importorskip("s3fs", reason="object-store tests need the stores extra (pip install 'myna[stores]')")
pytest.importorskip("moto", reason="S3 tests need moto[server] (the test extra)")
pytest.importorskip("aistore", reason="ais:// tests need the AIStore SDK (the stores extra)")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MYNA_DATA_STORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MYNA_DATA_STORE_RETRY_DELAY", "0.01")
    for var in ("NEMO_DATA_STORE_CACHE_DIR", "MYNA_DATA_STORE_CACHE_SHARED", "NEMO_DATA_STORE_CACHE_SHARED",
                "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AIS_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


@pytest.fixture
def s3_env(s3, monkeypatch):
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3


def _objects(root: Path) -> Path:
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "a.bin").write_bytes(bytes(range(256)) * 2000)
    (root / "sub" / "b.txt").write_text("hello\n")
    return root


# ----------------------------------------------------------------------------- URLs and cache paths


def test_urls_are_told_apart_from_local_paths():
    assert stores.is_url("s3://b/k") and stores.is_url("ais://b/k") and stores.is_url("https://h/x")
    assert not stores.is_url("/data/x.json") and not stores.is_url("x.json")
    assert not stores.is_url("file:///data/x.json") and not stores.is_url("C:\\data\\x.json")


def test_relative_audio_resolves_against_the_manifest_remote_folder():
    manifest = "s3://bucket/corpus/train.json"
    assert stores.resolve_against("audio/a.wav", manifest) == "s3://bucket/corpus/audio/a.wav"
    assert stores.resolve_against("../other/a.wav", manifest) == "s3://bucket/other/a.wav"
    assert stores.resolve_against("ais://b/a.wav", manifest) == "ais://b/a.wav"
    assert stores.resolve_against("/abs/a.wav", manifest) == "/abs/a.wav"
    with pytest.raises(StoreError, match="leaves the bucket"):
        stores.resolve_against("../../../x.wav", manifest)


def test_cache_paths_follow_nemo_layout_for_ais_and_per_scheme_for_others(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("AIS_ENDPOINT", "http://ais-proxy:51080")
    assert stores.cache_path("ais://bkt/dir/x.tar") == root / "ais" / "ais-proxy" / "51080" / "bkt" / "dir" / "x.tar"
    assert stores.cache_path("s3://bkt/k/x.json") == root / "s3" / "bkt" / "k" / "x.json"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert stores.cache_path("s3://bkt/x.json") == root / "s3" / "127.0.0.1" / "9000" / "bkt" / "x.json"
    assert stores.cache_path("https://host/p/x.wav?sig=1") == root / "http" / "host" / "443" / "p" / "x.wav"
    assert stores.cache_path("gs://bkt/x.wav") == root / "gs" / "bkt" / "x.wav"
    with pytest.raises(StoreError, match="plain path"):
        stores.cache_path("s3://bkt/a/../../escape")


def test_cache_root_and_sharing_honour_myna_then_nemo_variables(tmp_path, monkeypatch):
    assert stores.cache_root() == (tmp_path / "cache").resolve()
    monkeypatch.delenv("MYNA_DATA_STORE_CACHE_DIR")
    monkeypatch.setenv("NEMO_DATA_STORE_CACHE_DIR", str(tmp_path / "nemo"))
    assert stores.cache_root() == (tmp_path / "nemo").resolve()
    assert stores.cache_is_shared()
    monkeypatch.setenv("NEMO_DATA_STORE_CACHE_SHARED", "0")
    assert not stores.cache_is_shared()
    monkeypatch.setenv("MYNA_DATA_STORE_CACHE_SHARED", "1")
    assert stores.cache_is_shared()
    monkeypatch.setenv("MYNA_DATA_STORE_CACHE_SHARED", "yes")
    with pytest.raises(ValueError, match="must be 0 or 1"):
        stores.cache_is_shared()


def test_ais_url_without_endpoint_is_a_clear_error():
    with pytest.raises(StoreError, match="AIS_ENDPOINT"):
        stores.read_bytes("ais://bkt/x")


# ----------------------------------------------------------------------------- S3 (moto server)


def test_s3_objects_are_read_fetched_once_and_streamed(s3_env, tmp_path):
    root = _objects(tmp_path / "objs")
    s3_env.upload(root, "reads")
    body = (root / "a.bin").read_bytes()
    assert stores.read_bytes("s3://reads/a.bin") == body
    local = stores.fetch("s3://reads/sub/b.txt")
    assert local.read_text() == "hello\n" and local == stores.cache_path("s3://reads/sub/b.txt")
    s3_env.client().delete_object(Bucket="reads", Key="sub/b.txt")
    assert stores.fetch("s3://reads/sub/b.txt").read_text() == "hello\n"  # cached: no second request
    with stores.open_stream("s3://reads/a.bin") as f:
        assert f.read(1000) + f.read() == body
    assert not stores.cache_path("s3://reads/a.bin").exists()  # streams are not cached


def test_missing_s3_object_is_one_error_naming_the_url(s3_env):
    with pytest.raises(StoreError, match=r"s3://nobucket/x.json: no such object"):
        stores.fetch("s3://nobucket/x.json")


def test_unreachable_endpoint_is_retried_then_named(monkeypatch, caplog):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: connections are refused
    monkeypatch.setenv("MYNA_DATA_STORE_RETRIES", "2")
    with pytest.raises(StoreError, match=rf"cannot read http://127.0.0.1:{port}/x.json after 3 attempt\(s\)"):
        stores.read_bytes(f"http://127.0.0.1:{port}/x.json")
    assert caplog.text.count("retrying") == 2


# ----------------------------------------------------------------------------- HTTP


def test_http_objects_are_read_and_a_dropped_stream_resumes_with_a_range(tmp_path):
    body = os.urandom(200_000)
    with LoopbackServer({"/d/a.bin": body}) as server:
        assert stores.read_bytes(f"{server.url}/d/a.bin") == body
        server.cut_after = 70_000
        with stores.open_stream(f"{server.url}/d/a.bin") as f:
            got = b"".join(iter(lambda: f.read(10_000), b""))
        assert got == body and server.requests[-1] == ("/d/a.bin", "bytes=70000-")
        with pytest.raises(StoreError, match="no such object"):
            stores.fetch(f"{server.url}/d/missing.bin")


# ----------------------------------------------------------------------------- AIStore SDK


def test_ais_objects_go_through_the_sdk_and_cache_in_nemo_layout(tmp_path, monkeypatch):
    root = _objects(tmp_path / "objs")
    with AISStandIn({"bkt": root}) as ais:
        monkeypatch.setenv("AIS_ENDPOINT", ais.endpoint)
        assert stores.read_bytes("ais://bkt/sub/b.txt") == b"hello\n"
        local = stores.fetch("ais://bkt/a.bin")
        port = ais.endpoint.rsplit(":", 1)[1]
        assert local == tmp_path / "cache" / "ais" / "127.0.0.1" / port / "bkt" / "a.bin"
        assert local.read_bytes() == (root / "a.bin").read_bytes()
        with pytest.raises(StoreError, match=r"ais://bkt/nope: no such object"):
            stores.read_bytes("ais://bkt/nope")


def test_ais_stream_cut_mid_object_resumes_at_the_byte_it_reached(tmp_path, monkeypatch):
    root = _objects(tmp_path / "objs")
    with AISStandIn({"bkt": root}) as ais:
        monkeypatch.setenv("AIS_ENDPOINT", ais.endpoint)
        body = (root / "a.bin").read_bytes()
        ais.cut_next_after = 300_000
        with stores.open_stream("ais://bkt/a.bin") as f:
            got = b"".join(iter(lambda: f.read(4096), b""))
        assert got == body
        resumed = [r for r in ais.ranges if r]
        assert resumed and int(resumed[0].split("=")[1].rstrip("-")) % 4096 == 0  # reopened where reading stopped


def test_tar_shards_stream_from_a_store(tmp_path, monkeypatch):
    (tmp_path / "objs").mkdir()
    with tarfile.open(tmp_path / "objs" / "audio_0.tar", "w") as tar:
        for name in ("x.wav", "y.wav"):
            data = name.encode() * 1000
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with AISStandIn({"bkt": tmp_path / "objs"}) as ais:
        monkeypatch.setenv("AIS_ENDPOINT", ais.endpoint)
        with stores.open_stream("ais://bkt/audio_0.tar") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            members = [(m.name, tar.extractfile(m).read()) for m in tar]
    assert members == [("x.wav", b"x.wav" * 1000), ("y.wav", b"y.wav" * 1000)]


# ----------------------------------------------------------------------------- rank-0 caching


def _remote_corpus(root: Path) -> Path:
    (root / "audio").mkdir(parents=True)
    lines = []
    for i in range(5):
        (root / "audio" / f"u{i}.wav").write_bytes(f"wav{i}".encode())
        lines.append(json.dumps({"audio_filepath": f"audio/u{i}.wav", "duration": 1.0, "text": "x"}))
    (root / "train.json").write_text("\n".join(lines) + "\n")
    return root


def test_cache_remote_data_caches_manifest_and_audio_on_rank_zero(tmp_path, monkeypatch):
    root = _remote_corpus(tmp_path / "objs")
    with AISStandIn({"bkt": root}) as ais:
        monkeypatch.setenv("AIS_ENDPOINT", ais.endpoint)
        met = []
        stores.cache_remote_data(["ais://bkt/train.json", str(tmp_path / "local.json")], cache_audio=True,
                                 ranks=RankInfo(0, 0, 2), barrier=lambda: met.append(1))
        assert met == [1]
        for i in range(5):
            assert stores.cache_path(f"ais://bkt/audio/u{i}.wav").read_bytes() == f"wav{i}".encode()
        before = sum(ais.requests.values())
        stores.cache_remote_data(["ais://bkt/train.json"], cache_audio=True, ranks=RankInfo(0, 0, 1))
        assert sum(ais.requests.values()) == before  # all cached: nothing fetched again


def test_other_ranks_download_nothing_and_wait_for_the_cacher(tmp_path, monkeypatch):
    root = _remote_corpus(tmp_path / "objs")
    with AISStandIn({"bkt": root}) as ais:
        monkeypatch.setenv("AIS_ENDPOINT", ais.endpoint)
        done = threading.Event()

        def rank1():  # no process group: waits for rank 0's completion mark
            stores.cache_remote_data(["ais://bkt/train.json"], cache_audio=True, ranks=RankInfo(1, 1, 2),
                                     wait_timeout=30)
            done.set()

        waiter = threading.Thread(target=rank1)
        waiter.start()
        waiter.join(0.5)
        assert not done.is_set() and sum(ais.requests.values()) == 0
        stores.cache_remote_data(["ais://bkt/train.json"], cache_audio=True, ranks=RankInfo(0, 0, 2))
        waiter.join(10)
        assert done.is_set()
        assert all(n == 1 for n in ais.requests.values())  # each object fetched once, by rank 0


def test_unshared_cache_is_filled_by_each_node_local_rank_zero(tmp_path, monkeypatch):
    root = _remote_corpus(tmp_path / "objs")
    with AISStandIn({"bkt": root}) as ais:
        monkeypatch.setenv("AIS_ENDPOINT", ais.endpoint)
        monkeypatch.setenv("NEMO_DATA_STORE_CACHE_SHARED", "0")
        stores.cache_remote_data(["ais://bkt/train.json"], cache_audio=False, ranks=RankInfo(3, 0, 4),
                                 barrier=lambda: None)
        assert stores.cache_path("ais://bkt/train.json").is_file()
        assert not stores.cache_path("ais://bkt/audio/u0.wav").exists()  # cache_audio=False


def test_waiting_rank_times_out_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("AIS_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(StoreError, match="waited 0 s for the caching rank"):
        stores.cache_remote_data(["ais://bkt/train.json"], cache_audio=False, ranks=RankInfo(1, 1, 2),
                                 wait_timeout=0.3)
