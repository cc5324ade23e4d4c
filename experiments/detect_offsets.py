"""Where wfdb's XQRS detector (``predict --detect``, ``detect_beats``) puts MIT-BIH beats, against
the reference annotations the beat models were trained at.

For each record (MLII, as read for the models) and AAMI class: the annotated beats, those with no
detection within 150 ms (missed), and, of the others, the median distance in samples to the nearest
detection and the share more than 5 samples (14 ms at 360 Hz) away. A beat model reads a window
around each position: a detection off the annotation shifts that window, and a missed beat changes
its neighbours' RR features. Prints a table and writes experiments/results/detect_offsets.json.

Usage:
    python experiments/detect_offsets.py [--data-dir DIR] [--records 119 208 233] [--out FILE]
DIR holds mitdb/ (or is mitdb/ itself); default $MSRESNET1D_DATA. Default records: DS2.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from msresnet1d.arguments import (add_data_dir, as_program, database_or_exit, output_or_exit, path_flag,
                                  records_or_exit, results_help, script_parser, write_result)
from msresnet1d.data import DS2, read_annotations, read_record
from msresnet1d.data.aami import AAMI_CLASSES, MITBIH_TO_AAMI
from msresnet1d.inference import detect_beats
from msresnet1d.training.provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results" / "detect_offsets.json"
MISSED_S = 0.15
"""An annotated beat with no detection this close (seconds) counts as missed."""
OFF_SAMPLES = 5
"""A detection more than this many samples from its beat counts as off (14 ms at 360 Hz)."""


def offsets(annotated: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Signed distance in samples from each annotated beat (B,) to the nearest detection."""
    if not len(detected):
        return np.full(len(annotated), np.inf)
    after = np.clip(np.searchsorted(detected, annotated), 0, len(detected) - 1)
    before = np.clip(after - 1, 0, len(detected) - 1)
    nearest = np.where(np.abs(detected[after] - annotated) < np.abs(detected[before] - annotated),
                       detected[after], detected[before])
    return (nearest - annotated).astype(float)


def record_figures(path: Path) -> dict[str, dict[str, float | int | None]]:
    """Per AAMI class of record ``path``: beats, missed, median |offset| and share off."""
    record, annotations = read_record(path, leads=["MLII"]), read_annotations(path)
    classed = np.isin(annotations.symbol, list(MITBIH_TO_AAMI))
    beats = annotations.sample[classed]
    classes = np.array([MITBIH_TO_AAMI[s] for s in annotations.symbol[classed]])
    off = offsets(beats, detect_beats(record.signal, record.fs))
    found = np.abs(off) <= MISSED_S * record.fs
    figures = {}
    for name in AAMI_CLASSES:
        of_class = classes == name
        if of_class.any():
            near = np.abs(off[of_class & found])
            figures[name] = {"beats": int(of_class.sum()), "missed": int((of_class & ~found).sum()),
                             "median_abs_offset": float(np.median(near)) if len(near) else None,
                             "share_off": float(np.mean(near > OFF_SAMPLES)) if len(near) else None}
    return figures


def pooled(per_record: dict[str, dict]) -> dict[str, dict[str, float | int]]:
    """Each class's beats and missed beats summed over the records, and its share of beats off."""
    out = {}
    for name in AAMI_CLASSES:
        rows = [figures[name] for figures in per_record.values() if name in figures]
        found = [row["beats"] - row["missed"] for row in rows]
        if sum(found):
            off = sum(row["share_off"] * n for row, n in zip(rows, found) if n)
            out[name] = {"beats": sum(row["beats"] for row in rows), "missed": sum(row["missed"] for row in rows),
                         "share_off": off / sum(found)}
    return out


def build_parser() -> argparse.ArgumentParser:
    """This script's command-line parser (its arguments unchecked beyond their types: ``main`` checks the rest)."""
    parser = script_parser(__doc__)
    add_data_dir(parser, "mitdb/, or mitdb/ itself")
    parser.add_argument("--records", nargs="+", default=list(DS2), help="MIT-BIH records (default: DS2)")
    parser.add_argument("--out", type=path_flag, default=RESULTS, help=results_help(RESULTS))
    return parser


def main(argv: list[str] | None = None) -> None:
    started = time.time()
    parser = build_parser()
    args = parser.parse_args(argv)
    output_or_exit(parser, args.out)
    mitdb = database_or_exit(parser, "mitdb", args.data_dir)
    records_or_exit(parser, mitdb, args.records)
    start = time.perf_counter()
    per_record = {}
    for name in args.records:
        per_record[name] = record_figures(mitdb / name)
        shown = "; ".join(f"{c} {f['beats']} beats, {f['missed']} missed, median |offset| "
                          f"{f['median_abs_offset']} samples, {100 * (f['share_off'] or 0):.0f}% off"
                          for c, f in per_record[name].items())
        print(f"{name}: {shown}", flush=True)
    total = pooled(per_record)
    for name, figures in total.items():
        print(f"all: {name} {figures['beats']} beats, {figures['missed']} missed, "
              f"{100 * figures['share_off']:.1f}% of the others more than {OFF_SAMPLES} samples off")
    seconds = time.perf_counter() - start
    print(f"wall time: {seconds:.0f} s")
    write_result(args.out, json.dumps({"what": __doc__.split("\n\n")[0], "database": str(mitdb),
                                     "off_samples": OFF_SAMPLES, "missed_s": MISSED_S, "records": per_record,
                                     "pooled": total, "seconds": round(seconds, 1),
                                     "provenance": provenance(__file__, argv, started, [mitdb])}, indent=1) + "\n")


if __name__ == "__main__":
    with as_program():
        main()
