"""Reading WFDB records and annotations with ``wfdb``, checked before and after reading.

Every problem with a record's files (missing, truncated, malformed, inconsistent) is raised as
a :class:`DataError` naming the record and the file, never as an error from inside wfdb or
numpy; samples that fail the header's checksums are a warning naming them. Any WFDB signal
format wfdb reads is accepted (212, 16, 16+24 ``.mat``, big-endian 61, ...); what wfdb would
misread without a word is refused (a ``.mat`` file whose matrix is not of the header's type and
shape, a rate of 0 or written with an exponent, a gain field wfdb would read a part of).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import wfdb
from wfdb.io.annotation import ann_label_table

from .aami import BEAT_SYMBOLS
from .cache import cache_key
from ..values import is_number
from .errors import DataError, LeadError
from .preprocess import Normalization, lead_positions, preprocess_signal

#: Bits per sample of the WFDB storage formats whose file size is predictable.
FORMAT_BITS: dict[str, float] = {
    "8": 8, "16": 16, "24": 24, "32": 32, "61": 16, "80": 8, "160": 16,
    "212": 12, "310": 32 / 3, "311": 32 / 3,
}  # fmt: skip

#: Formats read in physical units, converted back to digital values for the checksums: wfdb 4.3
#: cannot read big-endian 61's digital samples frame by frame (``convert_dtype`` misparses ``>i2``).
PHYSICAL_FORMATS: frozenset[str] = frozenset({"61"})

#: Every annotation symbol wfdb knows (beats and non-beats); anything else is "unknown".
KNOWN_SYMBOLS: frozenset[str] = frozenset(s for s in ann_label_table["symbol"] if isinstance(s, str))

_NUMBER = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)"  # as wfdb reads them: no sign, no exponent (it reads 1e9 as 1)
_FS_FIELD = re.compile(rf"^{_NUMBER}(?:/{_NUMBER})?(?:\({_NUMBER}\))?$")
# a signal line's ADC gain field, "gain[(baseline)][/units]" (a lowercase exponent: wfdb reads 2E2 as 2);
# wfdb reads a prefix of whatever else
_GAIN_FIELD = re.compile(rf"^-?{_NUMBER}(?:e[-+]?[0-9]+)?(?:\(-?[0-9]+\))?(?:/[\w^\-?%/]*)?$")


@dataclass(frozen=True)
class Record:
    """One record's signals.

    Attributes:
        name: ``'<database folder>/<record>'``, e.g. ``'mitdb/100'``.
        signal: (C, L) float32 in physical units (see ``units``, usually mV); NaN marks samples
            wfdb reports as invalid.
        fs: sampling rate in Hz.
        leads: C lead (signal) names, in the order of ``signal`` (``""`` for a lead without
            a description, which WFDB allows).
        units: C physical units.
    """

    name: str
    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    units: tuple[str, ...]

    def __post_init__(self) -> None:  # one built by hand (a numpy signal to label) is checked too
        shape = getattr(self.signal, "shape", None)
        if not isinstance(self.signal, np.ndarray) or self.signal.ndim != 2 or shape[0] != len(self.leads):
            got = f"shape {shape}" if shape is not None else type(self.signal).__name__
            if shape is not None and len(shape) == 2 and shape[1] == len(self.leads):
                got += " (transposed? pass signal.T)"
            raise ValueError(f"record '{self.name}': signal is (C, L), one row a lead, for its {len(self.leads)} "
                             f"lead(s) {list(self.leads)}; got {got}")
        if not is_number(self.fs) or not math.isfinite(self.fs) or self.fs <= 0:
            raise ValueError(f"record '{self.name}': fs is the sampling rate in Hz, a number > 0; got {self.fs!r}")


@dataclass(frozen=True)
class Annotations:
    """One annotation file: ``sample`` (n,) int64 positions in samples at ``fs`` Hz and
    ``symbol`` (n,) str labels, in file order."""

    sample: np.ndarray
    symbol: np.ndarray
    fs: float


def record_label(path: str | os.PathLike[str]) -> str:
    """``'<folder>/<record>'``, or ``'<record>'`` for a path without a folder name (``'100'``,
    ``'./100'``): how errors name the record at ``path`` (without extension)."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _lead_names(sig_name: Sequence[str | None] | None) -> list[str]:
    """A header's lead names as strings: wfdb gives ``None`` for a lead without a description."""
    return [name or "" for name in sig_name or []]


def _fail(path: Path, problem: str, kind: type[DataError] = DataError) -> DataError:
    return kind(f"record '{record_label(path)}': {problem}")


def _check_folder(path: Path) -> None:
    """Raise a :class:`DataError` naming record ``path`` if its folder does not exist."""
    if not path.parent.is_dir():
        raise _fail(path, f"database folder {path.parent} does not exist")


def _missing_header(path: Path) -> DataError:
    """The error for record ``path``'s missing header (one for a missing folder), with the folder's
    other records when it holds some."""
    _check_folder(path)
    others = sorted(p.stem for p in path.parent.glob("*.hea"))
    hint = (f"; the folder holds {len(others)} other record(s), e.g. {', '.join(others[:3])} (another database, "
            "or a partial copy?)") if others else ""
    return _fail(path, f"file {path.name}.hea is missing{hint}")


def _header_fields(text: str) -> list[list[str]]:
    """The fields of a header's lines (``text``), comments left out: the record line's first."""
    return [fields for line in text.splitlines() if (fields := line.split()) and not fields[0].startswith("#")]


def _checked_header_file(path: Path) -> tuple[Path, list[list[str]]]:
    """``<path>.hea``, checked to exist and to have a sane record line (wfdb silently takes
    250 Hz for an unreadable sampling rate, so this is checked here), and the fields of its lines
    (comments left out), the record line's first."""
    header_file = path.with_name(path.name + ".hea")
    if not header_file.is_file():
        raise _missing_header(path)
    lines = _header_fields(header_file.read_text(errors="replace"))
    if not lines:
        raise _fail(path, f"file {header_file.name} is malformed: it has no record line")
    fields = lines[0]
    if len(fields) < 2 or not fields[1].isdigit():
        problem = f"record line {' '.join(fields)!r} does not give the number of signals as its second field"
        raise _fail(path, f"file {header_file.name} is malformed: {problem}")
    if len(fields) >= 3 and not _FS_FIELD.match(fields[2]):
        problem = f"sampling frequency field {fields[2]!r} is not a number (digits and a point, as wfdb reads it)"
        raise _fail(path, f"file {header_file.name} is malformed: {problem}")
    if len(fields) >= 3 and not float(re.match(_NUMBER, fields[2])[0]) > 0:
        raise _fail(path, f"file {header_file.name} is malformed: sampling frequency {fields[2]!r}, not above 0")
    for number, line in enumerate(lines[1 : 1 + int(fields[1])] if "/" not in fields[0] else [], 1):
        gain = line[2] if len(line) > 2 else ""
        if re.match(r"[-.0-9]", gain) and not _GAIN_FIELD.match(gain):  # not a lead name in its place
            problem = (f"signal line {number} ({' '.join(line[:3])} ...): its gain field {gain!r} is not "
                       "gain[(baseline)][/units], e.g. 200(1024)/mV, which wfdb would read a part of")
            raise _fail(path, f"file {header_file.name} is malformed: {problem}")
    return header_file, lines


def _expected_bytes(header: wfdb.Record, file_name: str) -> tuple[int, str] | None:
    """Minimum size of signal file ``file_name`` and a description of its content, or ``None``
    when the size cannot be predicted (compressed formats, unknown length)."""
    signals = [i for i, f in enumerate(header.file_name) if f == file_name]
    formats = {header.fmt[i] for i in signals}
    if header.sig_len is None or not formats <= FORMAT_BITS.keys():
        return None
    per_frame = header.samps_per_frame or [1] * header.n_sig
    bits = header.sig_len * sum(per_frame[i] * FORMAT_BITS[header.fmt[i]] for i in signals)
    offset = (header.byte_offset or [None] * header.n_sig)[signals[0]] or 0
    what = (
        f"{header.sig_len} samples x {sum(per_frame[i] for i in signals)} signals in format "
        f"{'/'.join(sorted(formats))}" + (f" after a {offset}-byte preamble" if offset else "")
    )
    return offset + math.ceil(bits / 8), what


def _parsed_header(path: Path) -> tuple[Path, wfdb.Record | wfdb.MultiRecord]:
    """``<path>.hea``, checked by :func:`_checked_header_file`, and wfdb's parse of it."""
    header_file, _ = _checked_header_file(path)
    try:
        return header_file, wfdb.rdheader(str(path))
    except Warning:  # a warning raised as an error (-W error: a deprecation inside wfdb): not damage
        raise
    except Exception as exc:  # wfdb raises HeaderSyntaxError, IndexError, ValueError...
        raise _fail(path, f"file {header_file.name} is malformed: {type(exc).__name__}: {exc}") from exc


def read_header(path: str | os.PathLike[str]) -> wfdb.Record:
    """Parse and check the header ``<path>.hea`` and the size of every signal file it names.

    Args:
        path: record path without extension, e.g. ``'.../mitdb/100'``.

    Returns:
        The wfdb header object (no samples read).

    Raises:
        DataError: missing or malformed ``.hea``, missing or truncated signal file.
    """
    path = Path(path)
    header_file, header = _parsed_header(path)
    if not isinstance(header, wfdb.Record):
        return header  # multi-segment record: wfdb checks its segments when reading
    n_lines = len(header.sig_name or [])
    if n_lines != header.n_sig:
        problem = f"the record line announces {header.n_sig} signals but {n_lines} signal lines follow"
        raise _fail(path, f"file {header_file.name} is malformed: {problem}")
    if not header.fs or header.fs <= 0:
        raise _fail(path, f"file {header_file.name} is malformed: sampling frequency {header.fs}")
    for file_name in dict.fromkeys(header.file_name or []):
        signal_file = path.parent / file_name
        if not signal_file.is_file():
            raise _fail(path, f"file {file_name} is missing")
        expected = _expected_bytes(header, file_name)
        found = signal_file.stat().st_size
        if expected is not None and found < expected[0]:
            problem = f"expected {expected[0]:,} bytes for {expected[1]}, found {found:,}"
            raise _fail(path, f"file {file_name} is truncated: {problem}")
    return header


def resolve_leads(path: str | os.PathLike[str], leads: Sequence[str]) -> list[str]:
    """The record's names of ``leads``: an entry ``"V1|V2|V4|V5"`` becomes the first of these the
    record has (read from its header); names without ``|`` are kept as they are, unchecked
    (:func:`read_record` checks them as it reads).

    Raises:
        LeadError: no lead of an entry with alternatives, or one lead chosen twice.
        DataError: a missing or malformed header.
    """
    if not any("|" in lead for lead in leads):
        return list(leads)
    return _lead_channels(Path(path), leads)[1]


def _lead_channels(path: Path, leads: Sequence[str]) -> tuple[list[int], list[str]]:
    """The positions of ``leads`` among record ``path``'s channels, as wfdb numbers them
    (:func:`~msresnet1d.data.preprocess.lead_positions`; a multi-segment record's are those of its
    first segment, the layout header of a variable layout), and the record's names of them.

    Raises:
        LeadError: an absent lead, or one lead chosen twice.
        DataError: a missing or malformed header.
    """
    header = read_header(path)
    if not isinstance(header, wfdb.Record):
        header = _parsed_header(path.parent / header.seg_name[0])[1]
    available = _lead_names(header.sig_name)
    try:
        positions = lead_positions(available, leads)
    except ValueError as exc:
        raise _fail(path, str(exc), LeadError) from None
    return positions, [available[i] for i in positions]


def _signed16(value: int) -> int:
    """``value`` modulo 2**16 as a signed 16-bit number, as WFDB headers write checksums."""
    return (value + 2**15) % 2**16 - 2**15


def _check_checksums(path: Path, record: wfdb.Record) -> None:
    """Warn when the 16-bit sum of a signal's digital samples (``record.e_d_signal``: the whole
    record, every sample of a frame) differs from the checksum field of its header line. A
    warning, not an error: valid records can carry stale checksums (a header cropped by editing
    its length, wfdb's own ``wfdb_to_mat``, which moves the baseline and keeps them), and
    neither wfdb nor the WFDB tools check them. A header without checksums, or whose checksums
    are all 0 (the placeholder of writers that compute none: every CinC 2017 header), and
    skewed signals (padded by wfdb) have nothing to compare."""
    if not any(record.checksum or []):
        return
    wrong = [
        f"file {file_name}, signal {lead or '(unnamed)'}: checksum {_signed16(found)}, {path.name}.hea expects "
        f"{_signed16(expected)}"
        for lead, file_name, expected, found, skew in zip(record.sig_name, record.file_name, record.checksum,
                                                          record.calc_checksum(expanded=True),
                                                          record.skew or [None] * record.n_sig, strict=True)
        if expected is not None and not skew and (expected - found) % 2**16
    ]
    if wrong:
        warnings.warn(f"record '{record_label(path)}': the samples do not match the header's checksums (16-bit sums of "
                      f"each signal's samples): {'; '.join(wrong)}. A damaged signal file, or a header that does not "
                      "describe it, gives wrong labels; a header cropped by editing its length, or written by a tool "
                      "that kept old checksums, is harmless", stacklevel=3)


#: The sampling frequency WFDB (and wfdb) assume for a header that gives none, in Hz.
DEFAULT_FS = 250.0

#: MAT version 4 type codes (little-endian, full numeric matrix) of the WFDB formats a ``.mat``
#: signal file holds (``16+24``: 16-bit integers after the 24-byte MAT header of a 3-letter name).
MAT_V4_TYPES: dict[str, tuple[int, str]] = {"16": (30, "16-bit integers"), "32": (20, "32-bit integers")}

#: The size of a MAT version 5 file's header, in bytes: a WFDB header that reads such a file from
#: a byte offset past it (``wfdb.wfdb_to_mat``'s ``16+192``) points at the data of its matrix,
#: whose tag (type and size, the 8 bytes before) must agree with the header's format and length.
MAT_V5_HEADER_BYTES = 128

#: MAT version 5 data types (miINT16, miINT32) of the WFDB formats a ``.mat`` signal file holds.
MAT_V5_TYPES: dict[str, tuple[int, str]] = {"16": (3, "miINT16"), "32": (5, "miINT32")}


def _check_mat_files(path: Path, record_line: list[str], signal_lines: list[list[str]]) -> None:
    """Check that each ``.mat`` signal file holds what its header's format says: a MAT version 4
    matrix of that integer type and shape (PhysioNet's CinC records), or a MAT version 5 file read
    past its headers at data of that type and size (``wfdb_to_mat``'s). wfdb reads any file from
    the byte offset on, so a float64 copy or a MAT version 5 file (``scipy.io.savemat``'s default)
    read from byte 24 would give wrong samples, silently."""
    files: dict[str, list[tuple[str, int]]] = {}
    for line in signal_lines:
        if len(line) > 1 and line[0].endswith(".mat"):
            fmt, offset = re.match(r"([0-9]*)(?:x[0-9]*)?(?::[0-9]*)?(?:\+([0-9]*))?", line[1]).groups()
            files.setdefault(line[0], []).append((fmt, int(offset or 0)))
    length = int(record_line[3]) if len(record_line) > 3 and record_line[3].isdigit() else None
    for name, signals in files.items():
        file = path.parent / name
        formats = {fmt for fmt, _ in signals}
        if formats - MAT_V4_TYPES.keys() or len(formats) > 1 or not file.is_file():
            continue  # a format without a MAT type to compare, or a missing file (reading names it)
        offset = signals[0][1]
        with open(file, "rb") as f:
            head = f.read(20)
            f.seek(max(offset - 8, 0))
            data_tag = f.read(8)  # a MAT v5 file's: the tag of the data the header points at
        expected, what = MAT_V4_TYPES[signals[0][0]]
        if head.startswith(b"MATLAB 5.0"):
            v5_type, _ = MAT_V5_TYPES[signals[0][0]]
            kind, size = struct.unpack("<2i", data_tag) if len(data_tag) == 8 else (None, None)
            wanted = None if length is None else length * len(signals) * int(signals[0][0]) // 8
            if offset >= MAT_V5_HEADER_BYTES + 8 and kind == v5_type and wanted in (None, size):
                continue  # read past its headers (wfdb_to_mat's 16+192), its data of the header's type and size
            problem = (f"is a MAT version 5 file whose data, where its header reads them from byte {offset}, are not "
                       f"{what} of {len(signals)} signal(s) x {length} samples (CinC's files are MAT version 4: "
                       "scipy.io.savemat(..., format='4') with int16 values)")
        elif len(head) < 20:
            problem = f"is {len(head)} bytes long, shorter than a MAT version 4 header"
        else:
            kind, rows, columns = struct.unpack("<3i", head[:12])
            shapes = [(len(signals), length)] + ([(length, 1)] if len(signals) == 1 else [])  # one lead: either way
            if kind != expected:
                problem = (f"holds MAT type {kind}, not {expected} ({what}, which its format {signals[0][0]} in "
                           f"{path.name}.hea reads)")
            elif length is not None and (rows, columns) not in shapes:
                problem = (f"holds a {rows} x {columns} matrix, where {path.name}.hea gives {len(signals)} signal(s) "
                           f"of {length} samples")
            else:
                continue
        raise _fail(path, f"file {name} {problem}")


def read_record(path: str | os.PathLike[str], leads: Sequence[str] | None = None) -> Record:
    """Read a record's signals with ``wfdb.rdrecord``.

    The header's record line is checked first; when ``leads`` are asked for, the whole header with
    :func:`read_header` too, for their channels' positions (about a third more time on a small
    record). When wfdb fails, or returns fewer samples than the header announces,
    :func:`read_header` finds out which file is at fault, so the error names it. The samples are
    read as digital values, compared with the header's checksums (which wfdb does not verify; a
    mismatch warns), then converted to physical units channel by channel (faster than wfdb's
    conversion of the (L, C) array), the samples of one frame of a multi-frequency signal
    averaged; a record with a signal in one of :data:`PHYSICAL_FORMATS` (61) is read in physical
    units and converted back for the checksums. A header whose record line names another record
    warns (a header copied from another record). Multi-segment records are read by wfdb in physical
    units, unchecked (their segments' headers hold the checksums); one whose segments give a lead
    in different units is refused.

    Args:
        path: record path without extension.
        leads: lead names to keep, in this order (by name, never by position: MIT-BIH record
            114 has MLII second); an entry ``"V1|V2|V4|V5"`` keeps the first of these the record
            has (:func:`~msresnet1d.data.preprocess.lead_positions`); ``""`` names a lead without
            a description; ``None`` keeps all.

    Returns:
        A :class:`Record` with ``signal`` (C, L) float32 in physical units.

    Raises:
        DataError: a file is missing, truncated or malformed, a lead is absent, or a
            multi-segment record's segments give a lead in different units.
    """
    path = Path(path)
    header_file, (record_line, *signal_lines) = _checked_header_file(path)
    if record_line[1] == "0" * len(record_line[1]):
        raise _fail(path, f"file {header_file.name} declares no signals (an annotation-only record): nothing to read")
    if len(record_line) > 3 and record_line[3].strip("0") == "":
        raise _fail(path, f"file {header_file.name} declares 0 samples a signal: nothing to read")
    if len(record_line) < 3:
        warnings.warn(f"record '{record_label(path)}': file {header_file.name} gives no sampling frequency, so "
                      f"WFDB's default, {DEFAULT_FS:g} Hz, is assumed: add the rate to its record line if it is "
                      "another", stacklevel=2)
    multi_segment = "/" in record_line[0]  # the record line's "name/segments"
    named = record_line[0].split("/")[0]
    if named != path.name and not multi_segment:  # a header copied from another record, with its signal files
        warnings.warn(f"record '{record_label(path)}': file {header_file.name} names record {named!r} in its record "
                      f"line, not {path.name!r} (a header copied from another record? its signal files are read: "
                      f"{', '.join(dict.fromkeys(line[0] for line in signal_lines)) or 'none'})", stacklevel=2)
    _check_mat_files(path, record_line, signal_lines)
    physical = multi_segment or any(len(line) > 1 and re.match("[0-9]*", line[1])[0] in PHYSICAL_FORMATS
                                    for line in signal_lines)  # a signal line's format: "61", "61x2", "61:3"...
    channels = None if leads is None else _lead_channels(path, leads)[0]  # wfdb cannot ask for a lead named None
    try:
        record = wfdb.rdrecord(str(path), channels=channels, physical=physical, smooth_frames=multi_segment)
    except Warning:  # a warning raised as an error (-W error: a deprecation inside wfdb): not damage
        raise
    except Exception as exc:  # wfdb raises FileNotFoundError, ValueError, IndexError...
        read_header(path)
        raise _fail(path, f"wfdb could not read the signals: {type(exc).__name__}: {exc}") from exc
    if multi_segment:
        if record.units is None:  # wfdb's sign of a variable layout whose segments' units differ
            raise _fail(path, "its segments give a lead in different physical units (wfdb gives none for the record), "
                              "which msresnet1d does not convert: write the segments in one unit")
        signal = np.ascontiguousarray(record.p_signal.T, dtype=np.float32)
    else:
        if physical:  # the digital samples again, for the checksums (adc rounds: exactly)
            record.e_d_signal = record.adc(expanded=True)
        _check_checksums(path, record)
        if not physical:
            record.dac(expanded=True, inplace=True)
        signal = np.array([samples if n == 1 else samples.reshape(-1, n).mean(axis=1)
                           for samples, n in zip(record.e_p_signal, record.samps_per_frame, strict=True)],
                          dtype=np.float32)
    if record.sig_len is not None and signal.shape[1] != record.sig_len:
        read_header(path)
        raise _fail(path, f"header announces {record.sig_len} samples, wfdb read {signal.shape[1]}")
    return Record(record_label(path), signal, float(record.fs), tuple(_lead_names(record.sig_name)),
                  tuple(record.units))


#: Fraction of a record after its last annotation above which :func:`read_annotations` warns.
UNANNOTATED_END = 0.1


def preprocess_record(record: Record, fs: float | None, band: tuple[float | None, float | None] | None,
                      normalization: Normalization | None, name: str | None = None) -> np.ndarray:
    """The record's (C, L) signal through :func:`~msresnet1d.data.preprocess.preprocess_signal`
    (band-pass ``band`` Hz, resampled to ``fs`` Hz, normalised): float32 (C, L'). A lead without
    a valid sample (all NaN: WFDB's invalid value, an unplugged electrode) or flat (one value
    throughout), an infinite sample, or a failure (a rate too low for the band, say) raises
    :class:`DataError` (:class:`LeadError` for the lead) naming the record (``name``, default
    ``record.name``)."""
    name = record.name if name is None else name
    _check_leads_readable(record, name)
    corner = None if band is None else max((f for f in band if f is not None), default=None)
    if corner is not None and record.fs <= 2 * corner:  # the filter is designed at the record's own rate
        raise DataError(f"record '{name}': its rate, {record.fs:g} Hz, is too low for the filter of [data] band = "
                        f"{list(band)} Hz (in predict, the model's): a corner at {corner:g} Hz needs a rate above "
                        f"{2 * corner:g} Hz")
    try:
        return preprocess_signal(record.signal, record.fs, target_fs=fs, band=band, normalization=normalization,
                                 name=name)
    except ValueError as exc:
        raise DataError(f"record '{name}': cannot preprocess: {exc}") from None


def warn_invalid(record: Record, outcome: str, starts: np.ndarray | None = None, ends: np.ndarray | None = None,
                 *, name: str | None = None, stacklevel: int = 2) -> None:
    """Warn when the record's leads hold WFDB's invalid value (NaN, which preprocessing
    interpolates), naming record ``name`` (default ``record.name``), how many samples, seconds and
    what fraction of the record are invalid, and the stretches (the first three, in seconds).
    ``outcome`` ends the message, after "they are interpolated, and "; given the spans a caller
    cuts (``starts`` and ``ends``, (n,) samples at ``record.fs``, ``[start, end)`` each: beat
    windows, sliding windows), its ``{}`` becomes how many of them reach into a stretch.
    ``stacklevel``: as ``warnings.warn``'s, seen from the caller."""
    missing = np.isnan(record.signal).any(axis=0)
    if not missing.any():
        return
    stretches = np.flatnonzero(np.diff(np.concatenate(([0], missing.astype(np.int8), [0])))).reshape(-1, 2)
    if starts is not None and ends is not None:
        inside = np.zeros(len(starts), dtype=bool)
        for begin, end in stretches:
            inside |= (starts < end) & (ends > begin)
        outcome = outcome.format(int(inside.sum()))
    count = int(missing.sum())
    shown = ", ".join(f"{a / record.fs:.1f}-{b / record.fs:.1f} s" for a, b in stretches[:3])
    warnings.warn(f"record '{record.name if name is None else name}': {count} samples ({count / record.fs:.1f} s, "
                  f"{100 * count / missing.size:.1f}% of the record) are invalid (WFDB's missing value) in "
                  f"{len(stretches)} stretch(es) ({shown}{', ...' if len(stretches) > 3 else ''}); they are "
                  f"interpolated, and {outcome}", stacklevel=stacklevel + 1)


def _check_leads_readable(record: Record, name: str) -> None:
    """Raise for an infinite sample (DataError), or a lead with no valid sample or flat
    (LeadError: nothing to label from it), naming record ``name`` and the lead."""
    leads = [(lead or "(unnamed)", row) for lead, row in zip(record.leads, record.signal, strict=True)]
    for lead, row in leads:
        if np.isinf(row).any():
            raise DataError(f"record '{name}': lead {lead} holds an infinite value at sample "
                            f"{int(np.flatnonzero(np.isinf(row))[0])}: mark a sample without a value NaN")
    empty = [lead for lead, row in leads if not np.isfinite(row).any()]
    if empty:
        raise LeadError(f"record '{name}': lead {', '.join(empty)} has no valid sample (every one is WFDB's invalid "
                        "value): nothing to label from it")
    flat = [lead for lead, row in leads if np.nanmax(row) == np.nanmin(row)]
    if flat:
        raise LeadError(f"record '{name}': lead {', '.join(flat)} is flat (one value throughout: an unplugged "
                        "electrode?): nothing to label from it")


def read_annotations(path: str | os.PathLike[str], extension: str = "atr") -> Annotations:
    """Read annotation file ``<path>.<extension>`` with ``wfdb.rdann`` and check it against
    the record's header.

    Warns when the file lacks WFDB's end-of-file marker (two zero bytes: it was cut at an even
    byte, and reads as far as it goes), or when the beat annotations stop more than
    :data:`UNANNOTATED_END` of the record (and more than 10 s) before its end (a truncated file,
    or one written at another rate: the warning gives the ratio of the record's length to the
    last beat's position, and the rate it suggests).

    Raises:
        DataError: missing or empty file, or one wfdb cannot read (damaged, truncated); an
            annotation code wfdb does not know; a sampling rate stored in the annotation file that
            differs from the header's; an annotation outside the signal.
    """
    path = Path(path)
    header = read_header(path)
    ann_file = path.with_name(f"{path.name}.{extension}")
    if not ann_file.is_file():
        raise _fail(path, f"file {ann_file.name} is missing")
    if ann_file.stat().st_size == 0:  # wfdb reads it as no annotations
        raise _fail(path, f"file {ann_file.name} is empty (0 bytes), not a WFDB annotation file")
    try:
        ann = wfdb.rdann(str(path), extension, return_label_elements=["symbol", "label_store"])
    except Warning:  # a warning raised as an error (-W error: a deprecation inside wfdb): not damage
        raise
    except Exception as exc:  # numpy's reshape error for an odd length, IndexError...
        raise _fail(path, f"file {ann_file.name} could not be read as a WFDB annotation file (damaged or truncated?): "
                          f"{type(exc).__name__}: {exc}") from exc
    symbols = np.array([s if isinstance(s, str) else "" for s in ann.symbol], dtype=str)
    unknown = ~np.isin(symbols, list(KNOWN_SYMBOLS))
    if unknown.any():
        first = np.flatnonzero(unknown)[:5]
        listed = ", ".join(
            f"{symbols[i]!r} at sample {ann.sample[i]}"
            if symbols[i]
            else f"code {ann.label_store[i]} at sample {ann.sample[i]}"
            for i in first
        )
        raise _fail(path, f"file {ann_file.name} has {unknown.sum()} annotation(s) with unknown labels: {listed}")
    if ann.fs is not None and not math.isclose(float(ann.fs), header.fs):
        problem = f"{ann_file.name} was written at {float(ann.fs):g} Hz but {path.name}.hea says {header.fs:g} Hz"
        raise _fail(path, f"sampling rate mismatch: {problem}")
    sample = np.asarray(ann.sample, dtype=np.int64)
    outside = (sample < 0) | (sample >= header.sig_len) if header.sig_len else sample < 0
    if outside.any():
        problem = f"{outside.sum()} annotation(s) outside the signal (0..{header.sig_len})"
        raise _fail(path, f"file {ann_file.name} has {problem}, first at sample {sample[outside][0]}")
    with open(ann_file, "rb") as f:
        f.seek(-2, os.SEEK_END)  # an empty file is refused above; one byte, by wfdb
        ended = f.read() == b"\0\0"  # the end-of-file marker: a file cut at an even byte reads, without it
    if not ended:
        last = f"its annotations stop at {sample[-1] / header.fs:.1f} s" if sample.size else "it holds no annotation"
        warnings.warn(f"record '{record_label(path)}': file {ann_file.name} lacks WFDB's end-of-file marker (two zero "
                      f"bytes), so it is truncated: {last}" + (f" of the record's {header.sig_len / header.fs:.1f} s"
                                                                if header.sig_len else ""), stacklevel=2)
    beats = sample[np.isin(symbols, list(BEAT_SYMBOLS))]  # a file of rhythm changes alone may end early
    if ended and header.sig_len and beats.size and header.sig_len - beats[-1] > max(UNANNOTATED_END * header.sig_len,
                                                                                    10 * header.fs):
        ratio = header.sig_len / max(int(beats[-1]), 1)  # the record's length over the last beat's position
        warnings.warn(f"record '{record_label(path)}': the beat annotations in {ann_file.name} stop at "
                      f"{beats[-1] / header.fs:.1f} s of the record's {header.sig_len / header.fs:.1f} s (a truncated "
                      "file? or annotations written at another sampling rate: positions x "
                      f"{ratio:.2f} is about the record's length, as if written at about {header.fs / ratio:.0f} Hz "
                      f"for a record at {header.fs:g} Hz)", stacklevel=2)
    return Annotations(sample, symbols, float(header.fs))


#: A folder's listing: its entries by name, and their names by stem (the name up to its first dot).
_Listing = tuple[dict[str, Path], dict[str, list[str]]]


def record_files(db_dir: str | os.PathLike[str], names: Iterable[str],
                 contents: dict[Path, bytes] | None = None) -> dict[str, list[Path]]:
    """The files each record is read from, sorted: its header, the signal files the header names
    (``r106_0.dat``, ``r106_1.dat`` as well as ``100.dat``), for a multi-segment record the headers
    of its segments (the layout header of a variable layout among them) and the signal files they
    name, and every other file named ``<record>.*`` (its annotation files). Each folder is listed
    once and each header read once. Used to key the cache (:func:`records_key`) and to digest the
    data a result was computed on.

    Args:
        db_dir: database folder.
        names: record names, relative to ``db_dir``.
        contents: if given, filled with the bytes of each header read (path -> bytes), for a caller
            that hashes them (:func:`~msresnet1d.data.cache.cache_key`'s ``contents``).

    Raises:
        DataError: a record's folder or header is missing, or a file a header names (a signal file,
            a segment's header), naming the record, the file and the header that names it.
    """
    db_dir, top = Path(db_dir), os.fspath(db_dir)
    listings: dict[str, _Listing] = {}  # by folder (paths as strings: ~4 times faster here than Path objects)
    contents = {} if contents is None else contents
    files = {}
    for name in names:
        folder, stem = os.path.split(os.path.join(top, name))
        if folder not in listings:
            _check_folder(db_dir / name)
        found = _header_files(folder, stem, listings, contents)
        entries, stems = _listing(folder, listings)
        for own in stems.get(stem, []):  # its annotation files, and any other <record>.* file
            found.setdefault(os.path.join(folder, own), entries[own])
        files[name] = [found[path] for path in sorted(found)]
    return files


def _listing(folder: str, listings: dict[str, _Listing]) -> _Listing:
    """``folder``'s :data:`_Listing`, from ``listings``, else scanned into it (empty for a missing
    folder)."""
    if folder not in listings:
        entries: dict[str, Path] = {}
        stems: dict[str, list[str]] = {}
        with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(folder) as scanned:
            for entry in scanned:
                entries[entry.name] = Path(entry.path)
                stems.setdefault(entry.name.split(".", 1)[0], []).append(entry.name)
        listings[folder] = entries, stems
    return listings[folder]


def _header_files(folder: str, stem: str, listings: dict[str, _Listing],
                  contents: dict[Path, bytes]) -> dict[str, Path]:
    """Record ``<folder>/<stem>``'s header and the files it names, by path: signal files (``~``, a
    null signal, is none) and, in a multi-segment record's header, segments (``~``, a gap, is none),
    whose headers and their files count, recursively. Headers are read from ``contents``, else into
    it; only what names files is parsed (the record line's first two fields, the first field of the
    lines after it): reading the record checks the rest. Raises :func:`record_files`'s errors for a
    missing file."""
    found: dict[str, Path] = {}
    pending: list[tuple[str, str, str | None]] = [(folder, stem, None)]  # (folder, record, the header naming it)
    while pending:
        where, record, named_in = pending.pop()
        header_name = f"{record}.hea"
        if os.path.join(where, header_name) in found:  # a segment named twice (or a header naming itself)
            continue
        header_file = _listing(where, listings)[0].get(header_name)
        if header_file is None and named_in is None:
            raise _missing_header(Path(folder, stem))
        if header_file is None:
            raise _fail(Path(folder, stem), f"file {header_name} is missing (a segment of the record, named in "
                                             f"{named_in})")
        found[os.path.join(where, header_name)] = header_file
        if header_file not in contents:
            contents[header_file] = header_file.read_bytes()
        record_line, *lines = _header_fields(contents[header_file].decode(errors="replace")) or [[""]]
        segments = "/" in record_line[0]  # "name/segments": a line a segment, its header's name first
        count = record_line[0].split("/", 1)[1] if segments else record_line[1] if len(record_line) > 1 else ""
        for line in lines[: int(count) if count.isdigit() else 0]:  # else a line a signal, its file's name first
            if line[0] == "~":
                continue
            named_where, named = os.path.split(os.path.join(where, line[0]))
            if segments:
                pending.append((named_where, named, header_name))
            elif (named_file := _listing(named_where, listings)[0].get(named)) is not None:
                found[os.path.join(named_where, named)] = named_file
            else:
                raise _fail(Path(folder, stem), f"file {line[0]} is missing (named in {header_name})")
    return found


def records_key(db_dir: str | os.PathLike[str], names: Iterable[str], params: Mapping[str, object],
                files: Iterable[Path] = ()) -> str:
    """The cache key (:func:`~msresnet1d.data.cache.cache_key`) of arrays computed from records
    ``names`` of ``db_dir`` (their :func:`record_files`, each header read once) and ``files``
    (``REFERENCE.csv``, say) with ``params``.

    Raises:
        DataError: as :func:`record_files`.
    """
    contents: dict[Path, bytes] = {}
    found = record_files(db_dir, names, contents)
    return cache_key(chain(files, *found.values()), params, contents)
