"""Tests for tfkd.bench.fetch, with no network: downloads come from file:// URLs and from HTTP
servers on 127.0.0.1 started by the tests."""

import datetime
import hashlib
import http.server
import json
import os
import re
import socket
import stat
import threading
import time
import urllib.request

import pytest

from tfkd.bench import fetch
from tfkd.bench.fetch import (BenchmarkToolUnavailable, cache_path, fetch_benchmark_tool,
                              platform_for_abi, platform_for_machine, sha256_of, tool_url)

# Enough of an ELF header for the magic check, then filler: a stand-in for the real tool.
FAKE_ELF = b"\x7fELF\x02\x01\x01" + bytes(9) + b"not really benchmark_model\n" * 40
OTHER_ELF = b"\x7fELF\x01\x01\x01" + bytes(9) + b"a newer nightly\n" * 40
PLATFORM = "linux_x86-64"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(fetch.CACHE_DIR_ENV, raising=False)
    monkeypatch.delenv(fetch.BASE_URL_ENV, raising=False)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "mirror" / f"{PLATFORM}_benchmark_model"
    path.parent.mkdir()
    path.write_bytes(FAKE_ELF)
    return path


@pytest.fixture
def server():
    """An HTTP server on a free local port; `routes` maps a path to a handler function."""
    routes = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the name http.server calls)
            routes.get(self.path, lambda h: h.send_error(404, "Not Found"))(self)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network was used although the cache is valid")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _entries(cache):
    directory = cache / "benchmark_model" / PLATFORM
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _sidecar(path):
    return json.loads(path.with_name("benchmark_model.json").read_text())


def _unavailable_match(cache):
    """What every BenchmarkToolUnavailable must tell the user: the cache path and the flag."""
    return re.escape(str(cache_path(PLATFORM, cache))) + r"[\s\S]*--benchmark_binary PATH"


def test_download_from_file_url_records_sha256(cache, source):
    path = fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri())
    assert path == cache / "benchmark_model" / PLATFORM / "benchmark_model"
    assert path.read_bytes() == FAKE_ELF
    record = _sidecar(path)
    assert record["sha256"] == hashlib.sha256(FAKE_ELF).hexdigest() == sha256_of(path)
    assert record["size"] == len(FAKE_ELF)
    assert record["url"] == source.as_uri()
    assert record["platform"] == PLATFORM
    downloaded = datetime.datetime.fromisoformat(record["downloaded_at"])
    assert downloaded.utcoffset() == datetime.timedelta(0)
    assert abs(datetime.datetime.now(datetime.timezone.utc) - downloaded).total_seconds() < 60
    assert _entries(cache) == ["benchmark_model", "benchmark_model.json"]


def test_downloaded_file_is_executable(cache, source):
    path = fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri())
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert os.access(path, os.X_OK)


@pytest.mark.parametrize("slash", ["", "/"])
def test_base_url_from_env(cache, source, monkeypatch, slash):
    monkeypatch.setenv(fetch.BASE_URL_ENV, source.parent.as_uri() + slash)
    assert tool_url(PLATFORM) == source.as_uri()
    path = fetch_benchmark_tool(PLATFORM, cache_dir=cache)
    assert path.read_bytes() == FAKE_ELF
    assert _sidecar(path)["url"] == source.as_uri()


def test_default_url_is_the_official_nightly():
    assert tool_url("android_aarch64") == (
        "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/"
        "tools/nightly/latest/android_aarch64_benchmark_model")


def test_cache_dir_from_env_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_path("linux_arm") == (
        tmp_path / "home" / ".cache" / "tfkd" / "benchmark_model" / "linux_arm" / "benchmark_model")
    monkeypatch.setenv(fetch.CACHE_DIR_ENV, str(tmp_path / "env"))
    assert cache_path("linux_arm").parent == tmp_path / "env" / "benchmark_model" / "linux_arm"
    assert cache_path("linux_arm", tmp_path / "arg").is_relative_to(tmp_path / "arg")


def test_cache_dir_env_is_used_by_fetch(tmp_path, source, monkeypatch):
    monkeypatch.setenv(fetch.CACHE_DIR_ENV, str(tmp_path / "env"))
    path = fetch_benchmark_tool(PLATFORM, url=source.as_uri())
    assert path.is_relative_to(tmp_path / "env")


def test_second_call_reuses_cache_without_network(cache, source, monkeypatch):
    first = fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri())
    source.unlink()
    _no_network(monkeypatch)
    second = fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri())
    assert second == first
    assert second.read_bytes() == FAKE_ELF


def test_corrupted_cache_is_downloaded_again(cache, source):
    path = fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri())
    path.write_bytes(b"\x7fELF truncated")
    assert fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri()) == path
    assert path.read_bytes() == FAKE_ELF
    assert sha256_of(path) == _sidecar(path)["sha256"]


def test_corrupted_cache_offline_says_so(cache, source):
    path = fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri())
    path.write_bytes(b"\x7fELF truncated")
    source.unlink()
    with pytest.raises(BenchmarkToolUnavailable, match="does not match the sha256"):
        fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri())
    with pytest.raises(BenchmarkToolUnavailable, match=_unavailable_match(cache)):
        fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri())


def test_unreadable_sidecar_means_download_again(cache, source):
    path = fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri())
    path.with_name("benchmark_model.json").write_text("{not json")
    source.write_bytes(OTHER_ELF)
    fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri())
    assert path.read_bytes() == OTHER_ELF
    assert _sidecar(path)["sha256"] == hashlib.sha256(OTHER_ELF).hexdigest()


def test_force_downloads_again(cache, source):
    path = fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri())
    source.write_bytes(OTHER_ELF)
    fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri())
    assert path.read_bytes() == FAKE_ELF  # Without force the valid cache wins.
    fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri(), force=True)
    assert path.read_bytes() == OTHER_ELF
    assert _sidecar(path)["sha256"] == hashlib.sha256(OTHER_ELF).hexdigest()


def test_failed_forced_download_keeps_the_cached_binary(cache, source):
    path = fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri())
    source.unlink()
    with pytest.raises(BenchmarkToolUnavailable, match="Downloading .* failed"):
        fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri(), force=True)
    assert path.read_bytes() == FAKE_ELF
    assert _entries(cache) == ["benchmark_model", "benchmark_model.json"]


def test_interrupted_download_leaves_no_partial_file(cache, server):
    base, routes = server

    def truncated(handler):
        # Promises more bytes than it sends, then hangs up: the client sees a short read.
        handler.send_response(200)
        handler.send_header("Content-Length", str(10 * len(FAKE_ELF)))
        handler.end_headers()
        handler.wfile.write(FAKE_ELF)
        handler.close_connection = True

    routes["/tool"] = truncated
    with pytest.raises(BenchmarkToolUnavailable, match=_unavailable_match(cache)) as info:
        fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=f"{base}/tool")
    assert f"cut short: got {len(FAKE_ELF)} of {10 * len(FAKE_ELF)} bytes" in str(info.value)
    assert _entries(cache) == []  # Neither the final name nor a temporary file.


def test_download_over_http(cache, server):
    base, routes = server

    def ok(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(FAKE_ELF)))
        handler.end_headers()
        handler.wfile.write(FAKE_ELF)

    routes[f"/{PLATFORM}_benchmark_model"] = ok
    path = fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=f"{base}/{PLATFORM}_benchmark_model")
    assert path.read_bytes() == FAKE_ELF


def test_http_error_is_reported(cache, server):
    base, _ = server
    url = f"{base}/{PLATFORM}_benchmark_model"
    with pytest.raises(BenchmarkToolUnavailable, match="HTTP 404") as info:
        fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=url)
    assert f"URL tried: {url}" in str(info.value)
    assert _entries(cache) == []


def test_missing_file_url_is_unavailable(cache, tmp_path):
    url = "file:///nonexistent/tfkd-test/linux_x86-64_benchmark_model"
    with pytest.raises(BenchmarkToolUnavailable, match=_unavailable_match(cache)) as info:
        fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=url)
    message = str(info.value)
    assert "failed" in message and url in message and "No such file" in message
    assert "benchmark_binary=PATH" in message
    assert _entries(cache) == []


def test_closed_port_is_unavailable(cache):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{PLATFORM}_benchmark_model"
    with pytest.raises(BenchmarkToolUnavailable, match=_unavailable_match(cache)) as info:
        fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=url)
    assert url in str(info.value)


def test_silent_server_times_out(cache):
    # A listening socket that never answers: the kernel accepts the connection, nothing replies.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/tool"
        start = time.monotonic()
        with pytest.raises(BenchmarkToolUnavailable, match=r"timeout_s=0\.3"):
            fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=url, timeout_s=0.3)
        assert time.monotonic() - start < 5


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"<!DOCTYPE html><html>403 Forbidden</html>", "HTML"),
    (b"  \n<?xml version='1.0'?><Error>NoSuchKey</Error>", "HTML"),
    (b"#!/bin/sh\necho hi\n", r"not an ELF executable \(it starts with b'#!/bin/s'\)"),
])
def test_non_binary_download_is_rejected(cache, tmp_path, content, message):
    bad = tmp_path / "bad"
    bad.write_bytes(content)
    with pytest.raises(BenchmarkToolUnavailable, match=message):
        fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=bad.as_uri())
    assert _entries(cache) == []


def test_binary_put_in_cache_by_hand_is_adopted(cache, monkeypatch):
    path = cache_path(PLATFORM, cache)
    path.parent.mkdir(parents=True)
    path.write_bytes(FAKE_ELF)
    path.chmod(0o644)
    _no_network(monkeypatch)
    assert fetch_benchmark_tool(PLATFORM, cache_dir=cache) == path
    assert os.access(path, os.X_OK)
    record = _sidecar(path)
    assert record["url"] is None and record["sha256"] == sha256_of(path)


def test_non_elf_put_in_cache_is_replaced(cache, source):
    path = cache_path(PLATFORM, cache)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"<html>saved the error page</html>")
    fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri())
    assert path.read_bytes() == FAKE_ELF


def test_unknown_platform_lists_the_valid_ones(cache):
    with pytest.raises(ValueError, match=r"'macos_arm64'.*valid platforms: linux_x86-64, "
                                         r"linux_aarch64, linux_arm, android_aarch64, android_arm"):
        fetch_benchmark_tool("macos_arm64", cache_dir=cache)
    with pytest.raises(ValueError, match="valid platforms"):
        cache_path("x86_64")
    assert not cache.exists()


@pytest.mark.parametrize("bad", [0, -1, None])
def test_timeout_must_be_positive(cache, source, bad):
    with pytest.raises(ValueError, match="timeout_s must be a positive number"):
        fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=source.as_uri(), timeout_s=bad)


def test_url_without_scheme_is_a_value_error(cache, source):
    with pytest.raises(ValueError, match=r"must start with one of http://, https://, file://"):
        fetch_benchmark_tool(PLATFORM, cache_dir=cache, url=str(source))


@pytest.mark.parametrize("abi, platform", [
    ("arm64-v8a", "android_aarch64"),
    ("armeabi-v7a", "android_arm"),
    ("armeabi", "android_arm"),
    ("arm64-v8a\r\n", "android_aarch64"),  # As `adb shell getprop` prints it.
])
def test_platform_for_abi(abi, platform):
    assert platform_for_abi(abi) == platform


@pytest.mark.parametrize("abi", ["x86_64", "x86", "riscv64"])
def test_platform_for_abi_rejects_others(abi):
    with pytest.raises(ValueError, match=rf"Android ABI '{abi}'.*--benchmark_binary PATH"):
        platform_for_abi(abi)


@pytest.mark.parametrize("machine, platform", [
    ("aarch64", "linux_aarch64"),
    ("arm64", "linux_aarch64"),
    ("armv7l", "linux_arm"),
    ("armv6l", "linux_arm"),
    ("armhf", "linux_arm"),
    ("x86_64", "linux_x86-64"),
    ("AMD64", "linux_x86-64"),
])
def test_platform_for_machine(machine, platform):
    assert platform_for_machine(machine) == platform
    assert platform in fetch.PLATFORMS


@pytest.mark.parametrize("machine", ["i686", "riscv64", "ppc64le"])
def test_platform_for_machine_rejects_others(machine):
    with pytest.raises(ValueError, match=rf"machine '{machine}'.*--benchmark_binary PATH"):
        platform_for_machine(machine)
