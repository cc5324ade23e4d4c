"""Cut the embedded MIT-BIH sample (datasets/mitdb-sample) from the full database.

The source must be a complete mitdb 1.0.0 whose 144 record files match PhysioNet's published
SHA-256 (``msresnet1d/data/checksums/mitdb.sha256``): an edited copy is refused. For every
non-paced record (44 of 48), keep the first ``--minutes`` minutes: the signals in their
original format (212), rate (360 Hz) and leads, written with ``wfdb.wrsamp``, and the reference
annotations (``.atr``) that fall inside that span, written with ``wfdb.wrann``. Every record is
read back and compared with the source before the sample is moved into place, and
``SHA256SUMS.txt`` is written for the data files. The sample's ``PROVENANCE.md`` (source,
license, citations: ODC-By 1.0 asks for the notice to go with a derived database) is copied
into it, with a note at the top when ``--minutes`` is not the 3 it describes.

Usage:
    python datasets/make_mitdb_sample.py --source /path/to/mitdb [--minutes 3] [--out datasets/mitdb-sample]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import wfdb

from msresnet1d.data.errors import DataError
from msresnet1d.data.locate import expected_checksums, list_records, verify_checksums
from msresnet1d.data.splits import PACED_RECORDS

log = logging.getLogger("make_mitdb_sample")

#: The shipped sample's notice: what it is cut from, its license and the citations.
PROVENANCE = Path(__file__).resolve().parent / "mitdb-sample" / "PROVENANCE.md"
DEFAULT_MINUTES = 3.0
ANNOTATOR = "atr"
ANNOTATION_FIELDS = ("sample", "symbol", "subtype", "chan", "num", "aux_note")
HEADER_FIELDS = ("fs", "sig_name", "fmt", "adc_gain", "baseline", "units", "adc_res", "adc_zero", "comments")


def signed16(value: int) -> int:
    """A WFDB header checksum as the original headers write it: a signed 16-bit number."""
    return (value + 2**15) % 2**16 - 2**15


def annotations_inside(ann: wfdb.Annotation, n_samples: int | None = None) -> dict[str, object]:
    """Every field of the annotations before sample ``n_samples`` (all if ``None``): numbers as
    arrays, strings as lists (a numpy string array would drop the trailing NUL of aux notes
    such as ``'(N\\x00'``)."""
    kept = np.flatnonzero(ann.sample < n_samples) if n_samples is not None else np.arange(len(ann.sample))
    fields = {field: getattr(ann, field) for field in ANNOTATION_FIELDS}
    return {
        field: values[kept] if isinstance(values, np.ndarray) else [values[i] for i in kept]
        for field, values in fields.items()
    }


def cut_record(source: Path, name: str, n_samples: int, out: Path) -> None:
    """Write the first ``n_samples`` samples of record ``name`` and its annotations to ``out``."""
    record = wfdb.rdrecord(str(source / name), physical=False, sampto=n_samples)
    record.sig_len = n_samples
    record.init_value = [int(v) for v in record.d_signal[0]]
    record.checksum = [signed16(c) for c in record.calc_checksum()]
    record.wrsamp(write_dir=str(out))

    ann = wfdb.rdann(str(source / name), ANNOTATOR)
    kept = annotations_inside(ann, n_samples)
    wfdb.wrann(name, ANNOTATOR, write_dir=str(out), **{field: kept[field] for field in ANNOTATION_FIELDS})
    verify_record(source, name, n_samples, out)


def verify_record(source: Path, name: str, n_samples: int, out: Path) -> None:
    """Read the cut record back and compare it with the source's first ``n_samples`` samples."""
    original = wfdb.rdrecord(str(source / name), physical=False, sampto=n_samples)
    cut = wfdb.rdrecord(str(out / name), physical=False)
    if cut.sig_len != n_samples or not np.array_equal(cut.d_signal, original.d_signal):
        raise RuntimeError(f"record {name}: the cut signal differs from the source")
    for field in HEADER_FIELDS:
        if getattr(cut, field) != getattr(original, field):
            raise RuntimeError(f"record {name}: header field {field} differs from the source")
    n_bytes = (out / f"{name}.dat").stat().st_size
    with open(source / f"{name}.dat", "rb") as f:
        if (out / f"{name}.dat").read_bytes() != f.read(n_bytes):
            raise RuntimeError(f"record {name}: {name}.dat is not the first {n_bytes} bytes of the source")
    expected = annotations_inside(wfdb.rdann(str(source / name), ANNOTATOR), n_samples)
    found = annotations_inside(wfdb.rdann(str(out / name), ANNOTATOR))
    for field in ANNOTATION_FIELDS:
        if list(found[field]) != list(expected[field]):
            raise RuntimeError(f"record {name}: annotation field {field} differs from the source")


def write_checksums(folder: Path) -> None:
    """``SHA256SUMS.txt`` (``sha256sum -c`` format) for every file but itself and PROVENANCE.md."""
    lines = []
    for path in sorted(folder.iterdir()):
        if path.name not in ("SHA256SUMS.txt", "PROVENANCE.md"):
            lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")
    (folder / "SHA256SUMS.txt").write_text("".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder of the full MIT-BIH database")
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                        help="minutes kept from the start of each record")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "mitdb-sample")
    parser.add_argument("--force", action="store_true", help="replace an existing --out folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.out.exists() and not args.force:
        parser.error(f"{args.out} exists; pass --force to replace it")
    try:
        verify_checksums(args.source, expected_checksums("mitdb"))
    except DataError as e:
        parser.error(f"--source: {e}: the sample is cut from an unedited mitdb 1.0.0 only")
    if not PROVENANCE.is_file():
        parser.error(f"{PROVENANCE} is missing: it is the notice every cut carries (restore it with git checkout -- "
                     "datasets/mitdb-sample/PROVENANCE.md)")
    notice = PROVENANCE.read_text(encoding="utf-8")  # read before --out (this very folder, by default) is replaced
    if args.minutes != DEFAULT_MINUTES:
        notice = (f"> This copy was cut with `--minutes {args.minutes:g}`: the span and sizes below describe the "
                  f"{DEFAULT_MINUTES:g}-minute sample, not it.\n\n{notice}")
    names = [n for n in list_records(args.source) if n not in PACED_RECORDS]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=args.out.parent, prefix=f".{args.out.name}.", suffix=".tmp"))
    try:
        for name in names:
            fs = wfdb.rdheader(str(args.source / name)).fs
            cut_record(args.source, name, round(args.minutes * 60 * fs), tmp)
            log.info("record %s: first %g min cut and verified", name, args.minutes)
        (tmp / "RECORDS").write_text("".join(f"{n}\n" for n in names))
        (tmp / "PROVENANCE.md").write_text(notice, encoding="utf-8", newline="")
        write_checksums(tmp)
        if args.out.exists():
            shutil.rmtree(args.out)
        os.rename(tmp, args.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = sum(p.stat().st_size for p in args.out.iterdir())
    log.info("%d records, %d files, %s bytes in %s", len(names), len(list(args.out.iterdir())), f"{total:,}", args.out)


if __name__ == "__main__":
    main()
