"""Timing, machine information and table printing shared by the benchmark sections.

Timing rules (the machine is shared and noisy):

* every case is timed with ``time.perf_counter`` over a batch of calls long enough to be
  measurable, and the batch is repeated; we keep every sample and report the median and the min;
* the cases being compared are timed round-robin (engine, reference, engine, reference, ...,
  with the order rotated each round), so that a slow spell of the machine hits all of them
  alike and the ratios stay meaningful even when the absolute times drift;
* the garbage collector stays on (it is part of what a user pays); ``gc.collect()`` runs before
  each batch so that every batch starts from the same state (for rounds of one short call
  each, where a full collection would take longer than the call, before the batches of every
  ``collect_every``-th round).
"""
from __future__ import annotations

import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Timing:
    """Per-call times in seconds, one sample per batch."""
    samples: list = field(default_factory=list)
    number: int = 1          # calls per batch

    @property
    def median(self):
        return statistics.median(self.samples)

    @property
    def min(self):
        return min(self.samples)

    def as_dict(self):
        return {"median_s": self.median, "min_s": self.min, "number": self.number,
                "samples_s": self.samples}


def _batch(fn, number, collect=True):
    if collect:
        gc.collect()
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def calibrate(fn, target_seconds):
    """The number of calls that makes one batch last about ``target_seconds``."""
    fn()  # warm up (first-call costs: imports, caches)
    number = 1
    while True:
        elapsed = _batch(fn, number) * number
        if elapsed >= target_seconds or number >= 1 << 22:
            return number
        number = max(number * 2, int(number * target_seconds / max(elapsed, 1e-9) * 1.1))


def compare(cases, repeats, target_seconds=0.0, collect_every=1):
    """Time each callable in ``cases`` ({name: fn}) round-robin, ``repeats`` batches each.

    ``target_seconds`` = 0 means one call per batch (for cases that take milliseconds): many
    short rounds then follow the machine's changes of speed more closely than a few long
    ones. ``collect_every``: the rounds whose batches start with ``gc.collect()`` (every one by
    default).
    """
    timings = {}
    for name, fn in cases.items():
        if target_seconds > 0:
            number = calibrate(fn, target_seconds)
        else:
            fn()  # warm up
            number = 1
        timings[name] = Timing(number=number)
    names = list(cases)
    for r in range(repeats):
        shift, collect = r % len(names), r % collect_every == 0
        for name in names[shift:] + names[:shift]:
            timings[name].samples.append(_batch(cases[name], timings[name].number, collect))
    return timings


def ratio(a: Timing, b: Timing):
    """(median ratio, min ratio) of a over b."""
    return a.median / b.median, a.min / b.min


# -- machine information ------------------------------------------------------------------------

def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas():
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older NumPy, or a build without the information
        return "unknown"


def _git_revision(repo_dir):
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo_dir,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo_dir, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info(repo_dir):
    import microgradrnn
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "numpy": np.__version__,
        "blas": _blas(),
        "microgradrnn": f"{microgradrnn.__version__} (git {_git_revision(repo_dir)})",
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "platform": platform.platform(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                   "MKL_NUM_THREADS") if k in os.environ},
        "argv": sys.argv,
    }


# -- printing -----------------------------------------------------------------------------------

def ratio_rows(section, timings, base_name, with_min=False):
    """Rows (case, median ms[, min ms], median ratio, min/min ratio) of every case against
    ``timings[base_name]``, each case's figures also stored in ``section.data``."""
    base = timings[base_name]
    rows = []
    for name, t in timings.items():
        r_med, r_min = ratio(t, base)
        rows.append((name, ms(t.median), *((ms(t.min),) if with_min else ()), x(r_med),
                     x(r_min)))
        section.data[name] = {**t.as_dict(), "ratio_median": r_med, "ratio_min": r_min}
    return rows


def table(headers, rows):
    """A plain fixed-width table as a string (first column left-aligned, the rest right)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths)))
    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def us(seconds):
    return f"{seconds * 1e6:.2f}"


def ms(seconds):
    return f"{seconds * 1e3:.1f}"


def x(value):
    return f"{value:.2f}x"


class Section:
    """What one benchmark section reports: printed text, correctness checks (which must pass),
    targets (which may be missed, and say so), and raw data for the JSON file."""

    def __init__(self, key, title):
        self.key, self.title = key, title
        self.checks = []    # (name, ok, detail)
        self.targets = []   # (name, value, limit, ok)
        self.data = {}
        self.say(f"\n== {title} ==")

    def say(self, text=""):
        print(text, flush=True)

    def check(self, name, ok, detail=""):
        ok = bool(ok)
        self.checks.append({"name": name, "ok": ok, "detail": detail})
        self.say(f"  check {'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")

    def target(self, name, value, limit, unit=""):
        ok = bool(value <= limit)
        self.targets.append({"name": name, "value": value, "limit": limit, "unit": unit, "ok": ok})

    def as_dict(self):
        return {"title": self.title, "checks": self.checks, "targets": self.targets,
                "data": self.data}


def run_alone(title, name, run, argv):
    """``python benchmarks/bench_<name>.py [--quick]``: one section on its own, with the
    machine described first and the results written to ``results/<name>-<time>.json``.
    Returns the exit status: 1 when a correctness check failed."""
    import datetime
    import json
    import os
    import time

    from _allocator import heap_for_timings

    quick = "--quick" in argv
    here = os.path.dirname(os.path.abspath(__file__))
    info = machine_info(os.path.dirname(here))
    info["heap"] = heap_for_timings("--default-allocator" in argv)
    print(f"microgradrnn {title} benchmark" + (" (--quick)" if quick else ""))
    for key in ("python", "numpy", "blas", "microgradrnn", "cpu", "cpus_usable", "load_average",
                "thread_env", "heap"):
        print(f"  {key:13s} {info[key]}")
    started = time.perf_counter()
    section = run(quick)
    elapsed = time.perf_counter() - started
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(os.path.join(here, "results"), exist_ok=True)
    path = os.path.join(here, "results", f"{name}-{stamp}{'-quick' if quick else ''}.json")
    with open(path, "w") as f:
        json.dump({"timestamp": stamp, "quick": quick, "machine": info, "seconds": elapsed,
                   "section": section.as_dict()}, f, indent=1, default=str)
    failed = [c for c in section.checks if not c["ok"]]
    missed = [t["name"] for t in section.targets if not t["ok"]]
    targets = (f"targets {'all met' if not missed else 'MISSED: ' + ', '.join(missed)}; "
               if section.targets else "")
    print(f"\n{len(section.checks) - len(failed)}/{len(section.checks)} checks passed; {targets}"
          f"{elapsed:.0f} s; load average at the end {os.getloadavg()}; results in "
          f"{os.path.relpath(path)}")
    return 1 if failed else 0

