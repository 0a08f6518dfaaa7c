"""Run the microgradrnn benchmark suite: ``python benchmarks/run.py [--quick] [sections]``.

Sections (all by default): --ops (per-op overhead), --chain (1,000,000-node chain: time per
node and memory), --rnn (hvp / gnvp / Gauss-Newton on an RNN, as ratios to one gradient),
--bptt (the RNN gradient against hand-written NumPy), --autograd (HIPS autograd's ratios on the
same RNN, when it is installed), --charstep (an mg.nn char-RNN step at three sizes against
hand-written NumPy BPTT, and where the extra time goes), --tbptt-memory (truncated BPTT streamed
over 1,000 to 100,000 steps: peak memory must stay flat), --checkpointing (checkpointed_loss
against plain BPTT over 10,000 steps: memory and time), --draw (mg.draw's DOT source for
10,000 nodes against a naive graphviz drawer, the max_nodes guard at 100,000, mg.render of the
demo's figures). Every ratio is against a reference timed in the same run.

Results are printed and written as JSON to benchmarks/results/ (``latest.json`` and a
timestamped copy). Exit status: 1 when a correctness check fails; with --strict, also when a
target is missed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _threads import THREAD_VARS  # noqa: E402


def _set_blas_threads(argv):
    """Fix the BLAS thread count before NumPy is imported (it reads it once, at load).

    Default 1: on a shared 2-core machine a multithreaded BLAS waits for a descheduled partner
    thread and single timings jump 3-4x; with one thread the engine and its NumPy reference
    still use the same BLAS, so the ratios stay fair. ``--blas-threads N`` overrides, and so
    does one of THREAD_VARS set in the environment.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--blas-threads", type=int, default=None)
    known, _ = pre.parse_known_args(argv)
    if known.blas_threads is not None:
        for var in THREAD_VARS:
            os.environ[var] = str(known.blas_threads)
    elif not any(var in os.environ for var in THREAD_VARS):
        for var in THREAD_VARS:
            os.environ[var] = "1"


_set_blas_threads(sys.argv[1:])

import _common  # noqa: E402
from _allocator import heap_for_timings  # noqa: E402

SECTIONS = ("ops", "chain", "rnn", "bptt", "autograd", "charstep", "tbptt-memory",
            "checkpointing", "draw", "esn", "rtrl", "hf-cost")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a fast smoke run: fewer repeats, a 100,000-node chain")
    for name in SECTIONS:
        parser.add_argument(f"--{name}", action="store_true", help=f"run the {name} section")
    parser.add_argument("--chain-nodes", type=int, default=None,
                        help="length of the chain (default 1,000,000; 100,000 with --quick)")
    parser.add_argument("--chain-runs", type=int, default=None,
                        help="fresh processes per chain (default 3; 1 with --quick)")
    parser.add_argument("--tbptt-lengths", default=None,
                        help="stream lengths of --tbptt-memory, comma-separated (default "
                             "1000,10000,100000; 1000,10000 with --quick)")
    parser.add_argument("--ckpt-steps", type=int, default=None,
                        help="sequence length of --checkpointing (default 10,000; 2,000 with "
                             "--quick)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="BLAS threads (default 1, or what OPENBLAS_NUM_THREADS / "
                             "OMP_NUM_THREADS / MKL_NUM_THREADS say)")
    parser.add_argument("--default-allocator", action="store_true",
                        help="time with glibc's default malloc thresholds (by default the heap "
                             "is held: see benchmarks/_allocator.py)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a speed or memory target is missed")
    parser.add_argument("--out", default=os.path.join(HERE, "results"),
                        help="directory for the JSON results (default benchmarks/results)")
    args = parser.parse_args(argv)
    chosen = [name for name in SECTIONS if getattr(args, name.replace("-", "_"))] \
        or list(SECTIONS)
    lengths = ([int(n) for n in args.tbptt_lengths.split(",")] if args.tbptt_lengths
               else None)

    info = _common.machine_info(os.path.dirname(HERE))
    info["heap"] = heap_for_timings(args.default_allocator)
    print("microgradrnn benchmarks" + (" (--quick)" if args.quick else ""))
    for key in ("python", "numpy", "blas", "microgradrnn", "cpu", "cpu_count", "cpus_usable",
                "platform", "load_average", "thread_env", "heap"):
        print(f"  {key:13s} {info[key]}")

    import bench_bptt
    import bench_charstep
    import bench_draw
    import bench_esn
    import bench_hf
    import bench_rtrl
    import bench_chain
    import bench_ops
    import bench_rnn
    runners = {
        "ops": lambda: bench_ops.run(args.quick),
        "chain": lambda: bench_chain.run(args.quick, args.chain_nodes, args.chain_runs),
        "rnn": lambda: bench_rnn.run_second_order(args.quick),
        "bptt": lambda: bench_rnn.run_bptt(args.quick),
        "autograd": lambda: bench_rnn.run_autograd(args.quick),
        "charstep": lambda: bench_charstep.run_charstep(args.quick),
        "tbptt-memory": lambda: bench_bptt.run_tbptt_memory(args.quick, lengths),
        "checkpointing": lambda: bench_bptt.run_checkpointing(args.quick, args.ckpt_steps),
        "draw": lambda: bench_draw.run_draw(args.quick),
        "esn": lambda: bench_esn.run_esn(args.quick),
        "rtrl": lambda: bench_rtrl.run_rtrl(args.quick),
        "hf-cost": lambda: bench_hf.run_cost(args.quick),
    }
    started = time.perf_counter()
    sections = []
    for name in chosen:
        t = time.perf_counter()
        section = runners[name]()
        section.data["section_seconds"] = time.perf_counter() - t
        sections.append(section)
    elapsed = time.perf_counter() - started

    print("\n== Summary ==")
    targets = [t for s in sections for t in s.targets]
    checks = [c for s in sections for c in s.checks]
    rows = [(t["name"], f"{t['value']:.2f}{' ' + t['unit'] if t['unit'] != 'x' else 'x'}",
             f"<= {t['limit']:g}{' ' + t['unit'] if t['unit'] != 'x' else 'x'}",
             "met" if t["ok"] else "MISSED") for t in targets]
    if rows:
        print(_common.table(["target", "measured", "target", ""], rows))
    failed = [c for c in checks if not c["ok"]]
    print(f"correctness checks: {len(checks) - len(failed)}/{len(checks)} passed"
          + "".join(f"\n  FAILED: {c['name']} {c['detail']}" for c in failed))
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"total time {elapsed:.0f} s; load average at the end {load_end} "
          f"(at the start {info['load_average']}: above ~0.5 other work shared the CPUs)")

    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    record = {"timestamp": stamp, "quick": args.quick, "machine": info,
              "total_seconds": elapsed, "load_average_end": load_end,
              "sections": {s.key: s.as_dict() for s in sections}}
    for path in (os.path.join(args.out, f"bench-{stamp}{'-quick' if args.quick else ''}.json"),
                 os.path.join(args.out, "latest.json")):
        with open(path, "w") as f:
            json.dump(record, f, indent=1, default=str)
    print(f"results written to {os.path.relpath(path)} (and a timestamped copy)")

    if failed:
        return 1
    if args.strict and any(not t["ok"] for t in targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
