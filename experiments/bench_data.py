"""Benchmark of the data layer: building the MIT-BIH inter-patient beat dataset (DS1 + DS2) and the
CinC 2017 rhythm dataset cold (empty cache) and from the cache.

Warm loads are timed in this process (repeated, page cache hot) and once in a fresh Python
process (how a training job starts; imports not counted). CPU time includes worker processes.
Prints the timings and writes them to experiments/results/bench_data.json (atomically).

Usage:
    python experiments/bench_data.py [--data-dir DIR] [--workers N] [--repeats 3] [--skip-cinc]
DIR holds mitdb/ and cinc2017/, or is mitdb/ itself with --skip-cinc; default $MSRESNET1D_DATA.
Both databases are checked before any timing (database_or_exit).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import torch
import wfdb

from msresnet1d.arguments import (add_data_dir, as_program, database_or_exit, output_or_exit, path_flag, positive_int,
                                  results_help, script_parser, write_result)
from msresnet1d.data import load_inter_patient, load_rhythm
from msresnet1d.data.parallel import default_workers, usable_cpus
from msresnet1d.training.provenance import load_average, provenance

try:
    import resource
except ImportError:  # Windows
    resource = None

RESULTS = Path(__file__).resolve().parent / "results" / "bench_data.json"

_FRESH_PROCESS = """
import json, sys, time
from msresnet1d.data import {function}
start = time.perf_counter()
{function}(sys.argv[1], cache_dir=sys.argv[2])
print(json.dumps(time.perf_counter() - start))
"""


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (worker processes); of this process
    alone where there is no ``resource`` module (Windows)."""
    if resource is None:
        return time.process_time()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(func: Callable[[], object]) -> tuple[object, dict[str, float]]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = func()
    return result, {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(cpu_seconds() - cpu, 3)}


def fresh_process_seconds(function: str, db_dir: Path, cache_dir: Path) -> float:
    code = _FRESH_PROCESS.format(function=function)
    out = subprocess.run([sys.executable, "-c", code, str(db_dir), str(cache_dir)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the fresh-process load of {function} failed (exit status {out.returncode}):\n{out.stderr}")
    return round(json.loads(out.stdout.strip().splitlines()[-1]), 3)


def bench(name: str, load: Callable[[Path], object], function: str, db_dir: Path, repeats: int) -> tuple[object, dict]:
    with tempfile.TemporaryDirectory(prefix="bench-data-cache-") as cache:
        cache_dir = Path(cache)
        result, cold = timed(lambda: load(cache_dir))
        warm = [timed(lambda: load(cache_dir))[1]["wall_s"] for _ in range(repeats)]
        fresh = fresh_process_seconds(function, db_dir, cache_dir)
        size = sum(f.stat().st_size for f in cache_dir.rglob("*") if f.is_file())
    timings = {
        "cold": cold,
        "warm_in_process_wall_s": warm,
        "warm_fresh_process_wall_s": fresh,
        "cache_bytes": size,
    }
    print(
        f"{name}: cold {cold['wall_s']:.2f} s wall ({cold['cpu_s']:.2f} s CPU), "
        f"from cache {min(warm):.3f}-{max(warm):.3f} s in process, {fresh:.3f} s in a fresh process, "
        f"cache {size / 1e6:.0f} MB"
    )
    return result, timings


def build_parser() -> argparse.ArgumentParser:
    """This script's command-line parser (its arguments unchecked beyond their types: ``main`` checks the rest)."""
    parser = script_parser(__doc__)
    add_data_dir(parser, "mitdb/ and cinc2017/, or mitdb/ itself with --skip-cinc")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="worker processes (default: usable CPUs, max 4)")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="warm loads timed in this process (>= 1, default 3)")
    parser.add_argument("--skip-cinc", action="store_true", help="only benchmark MIT-BIH")
    parser.add_argument("--out", type=path_flag, default=RESULTS, help=results_help(RESULTS))
    return parser


def main(argv: list[str] | None = None) -> None:
    started = time.time()
    parser = build_parser()
    args = parser.parse_args(argv)
    output_or_exit(parser, args.out)
    mitdb = database_or_exit(parser, "mitdb", args.data_dir)
    cinc = None if args.skip_cinc else database_or_exit(parser, "cinc2017", args.data_dir)

    report: dict = {
        "machine": {
            "cpus_usable": usable_cpus(),
            "load_average_before": load_average(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "torch": torch.__version__,
            "wfdb": wfdb.__version__,
        },
        "workers": args.workers if args.workers is not None else default_workers(),
    }
    (ds1, ds2), report["mitdb_ds1_ds2_beats"] = bench(
        "MIT-BIH DS1+DS2 beats",
        lambda cache: load_inter_patient(mitdb, cache_dir=cache, workers=args.workers),
        "load_inter_patient",
        mitdb,
        args.repeats,
    )
    report["mitdb_ds1_ds2_beats"].update(
        ds1_counts=ds1.class_counts(), ds2_counts=ds2.class_counts(), X_shape=[list(ds1.X.shape), list(ds2.X.shape)]
    )
    if cinc is not None:
        arrays, report["cinc2017_rhythm"] = bench(
            "CinC 2017 rhythm records",
            lambda cache: load_rhythm(cinc, cache_dir=cache, workers=args.workers),
            "load_rhythm",
            cinc,
            args.repeats,
        )
        report["cinc2017_rhythm"].update(records=len(arrays), counts=arrays.class_counts())
    report["machine"]["load_average_after"] = load_average()
    report["provenance"] = provenance(__file__, argv, started, [mitdb] + ([cinc] if cinc else []))
    machine = report["machine"]
    print(f"load average before/after: {machine['load_average_before']} / {machine['load_average_after']}")
    write_result(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    with as_program():
        main()
