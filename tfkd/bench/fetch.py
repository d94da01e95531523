"""Download and cache the official nightly prebuilt TFLite `benchmark_model` binary.

    path = fetch_benchmark_tool(platform_for_machine(platform.machine()))

The binaries are the ones the TFLite "Performance measurement" page links under "Download the
nightly pre-built native command-line binaries". The cache holds one binary per platform at
`<cache>/benchmark_model/<platform>/benchmark_model` with a JSON sidecar recording where it came
from and its sha256, so a cached tool is reused without any network access and a corrupted one is
noticed. A binary put at that path by hand (on a machine with no network) is adopted as it is.
"""

import datetime
import hashlib
import http.client
import json
import os
import pathlib
import tempfile
import urllib.error
import urllib.parse
import urllib.request

# Where the TFLite nightly builds publish the tools; the file for a platform is
# "<base>/<platform>_benchmark_model".
DEFAULT_BASE_URL = ("https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/"
                    "release/lite/tools/nightly/latest")
BASE_URL_ENV = "TFKD_BENCHMARK_TOOL_BASE_URL"
CACHE_DIR_ENV = "TFKD_CACHE_DIR"
PLATFORMS = ("linux_x86-64", "linux_aarch64", "linux_arm", "android_aarch64", "android_arm")

_ABI_PLATFORMS = {"arm64-v8a": "android_aarch64", "armeabi-v7a": "android_arm",
                  "armeabi": "android_arm"}
_MACHINE_PLATFORMS = {"aarch64": "linux_aarch64", "arm64": "linux_aarch64",
                      # armv8l: a 32-bit userland on a 64-bit ARM kernel runs 32-bit binaries.
                      "armv7l": "linux_arm", "armv6l": "linux_arm", "armhf": "linux_arm",
                      "armv8l": "linux_arm", "x86_64": "linux_x86-64", "amd64": "linux_x86-64"}
_URL_SCHEMES = ("http", "https", "file")
_ELF_MAGIC = b"\x7fELF"
_CHUNK = 1 << 20
_MISSING = "missing"
_FORCED = "force=True"


class BenchmarkToolUnavailable(RuntimeError):
    """The benchmark tool could neither be found in the cache nor downloaded."""


class _FetchError(Exception):
    """A download that failed or gave something that is not a binary; the reason is its text."""


def platform_for_abi(abi):
    """The benchmark tool platform for an Android ABI (`adb shell getprop ro.product.cpu.abi`).

    Args:
        abi: e.g. "arm64-v8a"; surrounding whitespace (as adb prints it) is ignored.

    Returns:
        "android_aarch64" or "android_arm".

    Raises:
        ValueError: no prebuilt binary exists for that ABI (x86 emulators, for instance).
    """
    key = abi.strip()
    if key not in _ABI_PLATFORMS:
        raise ValueError(
            f"no prebuilt benchmark_model for Android ABI {key!r}; prebuilt ABIs: "
            f"{', '.join(_ABI_PLATFORMS)}. Build benchmark_model for it from the TensorFlow "
            "sources and pass --benchmark_binary PATH (benchmark_binary= in Python).")
    return _ABI_PLATFORMS[key]


def platform_for_machine(machine):
    """The benchmark tool platform for a Linux machine name (`uname -m`, `platform.machine()`).

    Args:
        machine: e.g. "x86_64", "aarch64", "armv7l"; case is ignored ("AMD64" works).

    Returns:
        "linux_x86-64", "linux_aarch64" or "linux_arm".

    Raises:
        ValueError: no prebuilt Linux binary exists for that machine.
    """
    key = machine.strip().lower()
    if key not in _MACHINE_PLATFORMS:
        raise ValueError(
            f"no prebuilt benchmark_model for machine {machine!r}; prebuilt machines: "
            f"{', '.join(_MACHINE_PLATFORMS)}. Build benchmark_model for it from the TensorFlow "
            "sources and pass --benchmark_binary PATH (benchmark_binary= in Python).")
    return _MACHINE_PLATFORMS[key]


def tool_url(platform):
    """The download URL of `platform`'s binary: `$TFKD_BENCHMARK_TOOL_BASE_URL` or the default."""
    _check_platform(platform)
    base = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return f"{base.rstrip('/')}/{platform}_benchmark_model"


def cache_path(platform, cache_dir=None):
    """Where `fetch_benchmark_tool` keeps (and looks for) `platform`'s binary.

    Args:
        platform: one of `PLATFORMS`.
        cache_dir: the cache root; default `$TFKD_CACHE_DIR`, else `~/.cache/tfkd`.
    """
    _check_platform(platform)
    root = cache_dir or os.environ.get(CACHE_DIR_ENV) or "~/.cache/tfkd"
    return pathlib.Path(root).expanduser() / "benchmark_model" / platform / "benchmark_model"


def sha256_of(path):
    """The hex sha256 of a file's bytes, read in chunks so big binaries cost no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_benchmark_tool(platform, *, cache_dir=None, url=None, force=False, timeout_s=60):
    """The path of an executable `benchmark_model` for `platform`, downloaded once and cached.

    A cached binary whose sha256 matches its sidecar is returned without touching the network.
    A binary at the cache path with no sidecar (put there by hand) is adopted if it is ELF.
    Anything else (missing, corrupted, `force=True`) is downloaded again; the new file replaces
    the old one atomically, so an interrupted download never leaves a partial binary behind.

    Args:
        platform: one of `PLATFORMS`; see `platform_for_machine` and `platform_for_abi`.
        cache_dir: the cache root; default `$TFKD_CACHE_DIR`, else `~/.cache/tfkd`.
        url: the full URL of the binary; default `tool_url(platform)`. A cached binary is reused
            whatever URL it came from: pass `force=True` to replace it from a new URL.
        force: download even if the cache is valid.
        timeout_s: seconds to wait on the network before giving up (per blocking operation).

    Returns:
        The `pathlib.Path` of the cached executable.

    Raises:
        ValueError: unknown platform, a non-positive timeout or a URL urllib cannot fetch.
        BenchmarkToolUnavailable: no valid cached binary and the download failed or did not
            give an ELF executable; the message says where to put a binary by hand.
    """
    _check_platform(platform)
    if not timeout_s or timeout_s <= 0:
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    url = url or tool_url(platform)
    _check_url(url)
    binary = cache_path(platform, cache_dir)
    problem = _FORCED if force else _cache_problem(binary)
    if problem is None:
        return binary
    try:
        digest, size = _download_into(binary, url, timeout_s)
    except _FetchError as err:
        raise _unavailable(platform, url, binary, str(err), problem) from err
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    _write_sidecar(binary, {"platform": platform, "url": url, "sha256": digest, "size": size,
                            "downloaded_at": now})
    return binary


def _check_platform(platform):
    if platform not in PLATFORMS:
        raise ValueError(
            f"unknown benchmark tool platform {platform!r}; valid platforms: "
            f"{', '.join(PLATFORMS)}. platform_for_machine() and platform_for_abi() map "
            "`uname -m` and Android ABIs to these.")


def _check_url(url):
    # urllib raises a bare ValueError deep inside for a URL without a scheme; say it here.
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in _URL_SCHEMES:
        raise ValueError(f"cannot download the benchmark tool from {url!r}: the URL must start "
                         f"with one of {', '.join(s + '://' for s in _URL_SCHEMES)} (check "
                         f"url= and ${BASE_URL_ENV})")


def _sidecar(binary):
    return binary.with_name(binary.name + ".json")


def _cache_problem(binary):
    """None if `binary` can be used as it is, else why it must be downloaded."""
    if not binary.is_file():
        return _MISSING
    sidecar = _sidecar(binary)
    if not sidecar.exists():
        if not _starts_with_elf(binary):
            return f"{binary} is not an ELF executable"
        _adopt(binary)
    else:
        try:
            recorded = json.loads(sidecar.read_text())["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            return f"its record {sidecar} is unreadable ({err})"
        if sha256_of(binary) != recorded:
            return (f"{binary} does not match the sha256 recorded in {sidecar}: it was "
                    "corrupted or changed after the download")
    _make_executable(binary)
    return None


def _adopt(binary):
    """Records a binary put in the cache by hand, so later corruption of it is noticed."""
    record = {"platform": binary.parent.name, "url": None, "sha256": sha256_of(binary),
              "size": binary.stat().st_size, "downloaded_at": None}
    try:
        _write_sidecar(binary, record)
    except OSError:
        pass  # A read-only cache (shipped on an image) is still a usable cache.


def _starts_with_elf(path):
    with open(path, "rb") as f:
        return f.read(len(_ELF_MAGIC)) == _ELF_MAGIC


def _make_executable(path):
    # A binary copied by hand often lacks the x bits; callers then get "permission denied".
    mode = path.stat().st_mode
    if mode & 0o111 != 0o111:
        try:
            os.chmod(path, mode | 0o755)
        except OSError:
            pass  # Not ours to chmod; running it will say so.


def _download_into(binary, url, timeout_s):
    """Downloads `url` to `binary` atomically; returns (sha256, size). Raises `_FetchError`."""
    try:
        binary.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{binary.name}.", suffix=".part",
                                        dir=binary.parent)
    except OSError as err:
        raise _FetchError(f"cannot write the cache directory {binary.parent} ({err}); set "
                          f"${CACHE_DIR_ENV} or cache_dir= to a writable directory") from err
    tmp = pathlib.Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest, size = _copy_url(url, out, timeout_s)
            out.flush()
            os.fsync(out.fileno())  # The bytes must be on disk before the name points at them.
        _check_payload(tmp, size)
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(binary.parent)
    return digest, size


def _copy_url(url, out, timeout_s):
    """Streams `url` into the open file `out`; returns (sha256, size)."""
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            expected = response.headers.get("Content-Length")
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
    except (OSError, http.client.HTTPException) as err:  # URLError and timeouts are OSErrors.
        raise _FetchError(_describe(err, timeout_s)) from err
    # http.client's read(n) returns b"" when the server hangs up early instead of raising, so a
    # truncated binary (still ELF at its start) would pass every other check.
    if expected is not None and expected.isdigit() and int(expected) != size:
        raise _FetchError(f"the download was cut short: got {size} of {expected} bytes")
    return digest.hexdigest(), size


def _describe(err, timeout_s):
    if isinstance(err, urllib.error.HTTPError):
        err.close()  # It holds the open error response.
        return f"HTTP {err.code} {err.reason}"
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, TimeoutError):
        return f"no answer within timeout_s={timeout_s} s"
    return str(reason) or type(reason).__name__


def _check_payload(path, size):
    if size == 0:
        raise _FetchError("the download is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(64)
    if head.lstrip().startswith(b"<"):
        raise _FetchError("the download is an HTML/XML page, not a binary (an error page, or a "
                          "proxy or login page in between?)")
    if not head.startswith(_ELF_MAGIC):
        raise _FetchError(f"the download is not an ELF executable (it starts with {head[:8]!r})")


def _fsync_dir(directory):
    # Makes the rename itself durable; some file systems refuse to fsync a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_sidecar(binary, record):
    # Written atomically too: a torn record would make a good binary look corrupted.
    sidecar = _sidecar(binary)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{sidecar.name}.", suffix=".part",
                                    dir=sidecar.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, sidecar)
    except BaseException:
        pathlib.Path(tmp_name).unlink(missing_ok=True)
        raise


def _unavailable(platform, url, binary, reason, problem):
    if problem in (_MISSING, _FORCED):
        lead = f"Downloading the TFLite benchmark tool for {platform} failed: {reason}."
    else:
        lead = (f"The cached TFLite benchmark tool is unusable ({problem}), and downloading it "
                f"again failed: {reason}.")
    return BenchmarkToolUnavailable(
        f"{lead}\n"
        f"  URL tried: {url}\n"
        f"  Fix: put a benchmark_model binary for {platform} at {binary} (and delete "
        f"{_sidecar(binary)} if it exists), or pass --benchmark_binary PATH "
        f"(benchmark_binary=PATH in Python) to use a binary you already have. "
        f"To download from a mirror, set ${BASE_URL_ENV}.")
