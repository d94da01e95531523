"""The one settings vocabulary of every benchmark: thread counts and delegates.

The same words are used by `tfkd.bench.run`, `python -m android_bench --delegates` and the
recipes' `--delegates`:

    "xnnpack"  the XNNPACK CPU delegate (the runtimes' default)
    "gpu"      the GPU delegate; ops it does not take run on the builtin CPU kernels
    "nnapi"    Android's NNAPI delegate; likewise
    "none"     the builtin CPU kernels only

A list of thread counts and delegates becomes a plan: one setting per (threads, delegate),
threads-major, which is the order of the results.
"""

import warnings

DELEGATES = ("xnnpack", "gpu", "nnapi", "none")
DEFAULT_DELEGATE = "xnnpack"
# The older benchmark_model keywords that spelled a delegate (still taken, with a warning).
_LEGACY_FLAGS = ("use_xnnpack", "use_gpu", "use_nnapi")


def thread_list(threads):
    """`threads` (an int or a sequence) as a tuple of positive ints; ValueError otherwise."""
    threads = (threads,) if isinstance(threads, int) else tuple(threads)
    if not threads or any(not isinstance(t, int) or isinstance(t, bool) or t < 1
                          for t in threads):
        raise ValueError(f"threads={threads!r}; pass positive integers, e.g. threads=(1, 2)")
    return threads


def delegate_list(delegate):
    """`delegate` (one name or a sequence of names) as a tuple of known delegates.

    Raises:
        ValueError: empty, or a name not in `DELEGATES`; the message lists the names.
    """
    delegates = (delegate,) if isinstance(delegate, str) else tuple(delegate)
    unknown = [d for d in delegates if d not in DELEGATES]
    if unknown or not delegates:
        raise ValueError(f"delegate={delegate!r}: unknown delegates {unknown}; choose from "
                         f"{', '.join(DELEGATES)} (one name or a sequence of names)")
    return delegates


def plan(threads, delegate):
    """[(threads, delegate), ...]: one setting per pair, threads-major."""
    return [(t, d) for t in thread_list(threads) for d in delegate_list(delegate)]


def take_legacy(settings, delegate, where):
    """Pops the older delegate keywords out of `settings` and returns the delegate they mean.

    `delegates=` (android_bench) and `use_xnnpack=` / `use_gpu=` / `use_nnapi=` (benchmark_model
    flags) still work, each with a `DeprecationWarning` naming the new spelling.

    Args:
        settings: keyword settings; the legacy ones are removed from it.
        delegate: the `delegate=` given; None or the default means "not chosen", so the legacy
            keywords decide.
        where: the function's name, for the warning.

    Returns:
        The delegate (a name or a sequence) to use: `delegate`, else what the legacy keywords
        mean, else `DEFAULT_DELEGATE`.
    """
    legacy = {name: settings.pop(name) for name in (*_LEGACY_FLAGS, "delegates")
              if name in settings}
    if not legacy:
        return DEFAULT_DELEGATE if delegate is None else delegate
    if delegate not in (None, DEFAULT_DELEGATE):
        raise ValueError(f"{where}: pass delegate= alone, not with {sorted(legacy)}")
    if "delegates" in legacy:
        if len(legacy) > 1:
            raise ValueError(f"{where}: pass delegate= alone, not {sorted(legacy)}")
        warn(f"{where}(delegates=...) is deprecated; pass delegate=, the same names")
        return legacy["delegates"]
    meant = legacy_delegate(**legacy)
    given = ", ".join(f"{k}={v!r}" for k, v in legacy.items())
    warn(f"{where}({given}) is deprecated; pass delegate={meant!r}")
    return meant


def legacy_delegate(use_xnnpack=None, use_gpu=None, use_nnapi=None):
    """The delegate name the older `use_*` flags ask for."""
    if use_gpu and use_nnapi:
        raise ValueError("use_gpu and use_nnapi together are one run with both delegates, "
                         "which the delegate vocabulary does not have; pass "
                         "delegate=('gpu', 'nnapi') for one run each")
    if use_gpu:
        return "gpu"
    if use_nnapi:
        return "nnapi"
    return "none" if use_xnnpack is False else "xnnpack"


def check_count(name, value, minimum, hint):
    """ValueError unless `value` is an int >= `minimum`; `hint` says what to pass instead."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}; {hint}")


def check_runs(warmup_runs, num_runs):
    """The warm-up and timed run counts every tool takes."""
    check_count("num_runs", num_runs, 1, "pass num_runs=50 for example")
    check_count("warmup_runs", warmup_runs, 0, "pass warmup_runs=0 for no warm-up")


def warn(message, stacklevel=4):
    """A one-line `DeprecationWarning` pointing at the caller's caller."""
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel)
