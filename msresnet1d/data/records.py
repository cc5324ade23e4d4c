"""Reading WFDB records and annotations with ``wfdb``, checked before and after reading.

Every problem with a record's files (missing, truncated, malformed, inconsistent) is raised as
a :class:`DataError` naming the record and the file, never as an error from inside wfdb or
numpy; samples that fail the header's checksums are a warning naming them. Any WFDB signal
format wfdb reads is accepted (212, 16, 16+24 ``.mat``, big-endian 61, ...); what wfdb would
misread without a word is refused (a ``.mat`` file whose matrix is not of the header's type and
shape or not where its byte offset points, a rate of 0 or written with an exponent, a number of
samples wfdb would read a part of, a signal line's field wfdb would read a part of or fold into
the lead's name, signals of one file in different formats, a multi-segment record's segment
that is a gap outside a variable layout or another multi-segment record).
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
from wfdb.io._signal import DAT_FMTS  # the formats wfdb reads (its own table: in step with wfdb)
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
_GAIN = rf"-?{_NUMBER}(?:e[-+]?[0-9]+)?"  # a lowercase exponent: wfdb reads 2E2 as 2
# a signal line's ADC gain field, "gain[(baseline)][/units]"; wfdb reads a prefix of whatever else
_GAIN_FIELD = re.compile(rf"^{_GAIN}(?:\(-?[0-9]+\))?(?:/[\w^\-?%/]*)?$")
# a signal line's format field, "format[xsamples per frame][:skew][+byte offset]", each a whole number
_FORMAT_FIELD = re.compile(r"^([0-9]+)(?:x([0-9]+))?(?::([0-9]+))?(?:\+([0-9]+))?$")
# the fields of a signal line between its gain and its description, as wfdb reads them (wfdb.io.header.rx_signal)
_INTEGER_FIELDS = (("ADC resolution", "[0-9]+"), ("ADC zero", "-?[0-9]+"), ("initial value", "-?[0-9]+"),
                   ("checksum", "-?[0-9]+"), ("block size", "[0-9]+"))


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
    250 Hz for an unreadable sampling rate, and reads a number of samples ``900x`` as 900, so these
    are checked here) and signal lines (:func:`_signal_line_problem`; signals sharing a file in one
    format), and the fields of its lines (comments left out), the record line's first."""
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
    if len(fields) >= 4 and not re.fullmatch("[0-9]+", fields[3]):
        read_as = re.match("[0-9]*", fields[3])[0] or "absent"
        problem = (f"its number of samples (a signal), field 4 of the record line, is {fields[3]!r}, not a whole "
                   f"number (wfdb would read it as {read_as})")
        raise _fail(path, f"file {header_file.name} is malformed: {problem}")
    signal_lines = lines[1 : 1 + int(fields[1])] if "/" not in fields[0] else []  # else segment lines
    first_in_file: dict[str, tuple[int, str]] = {}  # a signal file's first signal line: its number and format
    for number, line in enumerate(signal_lines, 1):
        line_problem = _signal_line_problem(line)
        if line_problem is None:
            fmt = _FORMAT_FIELD.match(line[1])[1]
            first, first_fmt = first_in_file.setdefault(line[0], (number, fmt))
            if fmt != first_fmt and line[0] != "~":
                line_problem = (f"its format, {fmt}, is not that of signal line {first} ({first_fmt}), which shares "
                                "its file: wfdb reads a file in its first signal's format")
        if line_problem is not None:
            raise _fail(path, f"file {header_file.name} is malformed: signal line {number} ({' '.join(line[:3])} "
                              f"...): {line_problem}")
    return header_file, lines


def _signal_line_problem(line: list[str]) -> str | None:
    """What wfdb would misread in signal line ``line`` (its fields), or ``None``: a file name of
    other characters than wfdb's (it reads ``1\xff0.dat`` as ``10.dat``), a format field
    that is not ``format[xsamples per frame][:skew][+byte offset]`` (whole numbers, 1 or more
    samples a frame) of a format wfdb reads (``0``, no samples, for a null signal ``~`` only, as a
    layout header's), a gain that is not ``gain[(baseline)][/units]`` or not a finite number, and
    a non-integer among the fields after it up to the description (ADC resolution, ADC zero,
    initial value, checksum, block size: wfdb would take them and the rest for the lead's name)."""
    if not re.fullmatch(r"~|[-\w]*\.?\w*", line[0], re.ASCII):  # wfdb drops a header's non-ASCII bytes
        return (f"its file name {line[0]!r} is not one wfdb reads as written (ASCII letters, digits, _ and -, "
                "at most one dot, no folder)")
    fmt_field = line[1] if len(line) > 1 else ""
    fmt = _FORMAT_FIELD.match(fmt_field)
    if fmt is None:
        return (f"its format field {fmt_field!r} is not format[xsamples per frame][:skew][+byte offset], each a "
                "whole number (212, 16x4, 16+24, ...)")
    if fmt[2] is not None and int(fmt[2]) < 1:
        return f"its format field {fmt_field!r} gives {fmt[2]} samples per frame, where a signal has 1 or more"
    if fmt[1] not in DAT_FMTS and not (fmt[1] == "0" and line[0] == "~"):
        return f"its format, {fmt[1]}, is not a WFDB format wfdb reads ({', '.join(DAT_FMTS)})"
    if len(line) < 3:
        return None
    gain = line[2]
    if not _GAIN_FIELD.match(gain):
        return (f"its gain field {gain!r} is not gain[(baseline)][/units], e.g. 200(1024)/mV, which wfdb would "
                "misread")
    written = re.match(_GAIN, gain)[0]
    value = float(written)
    if not math.isfinite(value):
        return f"its gain, {written}, is not a finite number (it reads as {value})"
    if value == 0 and re.search("[1-9]", written.split("e")[0]):  # a gain written 0 is WFDB's "uncalibrated"
        return (f"its gain, {written}, is too small for a float: it reads as 0, which WFDB takes for an uncalibrated "
                "signal's (a gain of 200)")
    for index, ((name, pattern), field) in enumerate(zip(_INTEGER_FIELDS, line[3:], strict=False), 4):
        if not re.fullmatch(pattern, field):
            return (f"its field {index}, the {name}, is {field!r}, not an integer: after the gain come the ADC "
                    "resolution, ADC zero, initial value, checksum and block size, all integers, then the "
                    "description")
    return None


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


def _parsed_header(path: Path) -> tuple[Path, list[list[str]], wfdb.Record | wfdb.MultiRecord]:
    """``<path>.hea`` and the fields of its lines, checked by :func:`_checked_header_file`, and
    wfdb's parse of it."""
    header_file, lines = _checked_header_file(path)
    try:
        return header_file, lines, wfdb.rdheader(str(path))
    except Warning:  # a warning raised as an error (-W error: a deprecation inside wfdb): not damage
        raise
    except Exception as exc:  # wfdb raises HeaderSyntaxError, IndexError, ValueError...
        raise _fail(path, f"file {header_file.name} is malformed: {type(exc).__name__}: {exc}") from exc


def read_header(path: str | os.PathLike[str]) -> wfdb.Record | wfdb.MultiRecord:
    """Parse and check the header ``<path>.hea`` and the size of every signal file it names; a
    multi-segment record's segments' headers (:func:`_check_segments`).

    Args:
        path: record path without extension, e.g. ``'.../mitdb/100'``.

    Returns:
        The wfdb header object (no samples read).

    Raises:
        DataError: missing or malformed ``.hea``, missing or truncated signal file, a segment
            wfdb would misread.
    """
    return _read_header(Path(path))[2]


def _read_header(path: Path) -> tuple[Path, list[list[str]], wfdb.Record | wfdb.MultiRecord]:
    """:func:`read_header`'s work: the header file, the fields of its lines (comments left out, the
    record line's first) and wfdb's parse of it."""
    header_file, lines, header = _parsed_header(path)
    if not isinstance(header, wfdb.Record):
        _check_segments(path, header_file, header)
        return header_file, lines, header  # wfdb checks the segments' signal files when reading
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
    return header_file, lines, header


def _check_segments(path: Path, header_file: Path, header: wfdb.MultiRecord) -> None:
    """Raise a :class:`DataError` for a multi-segment record's segment that wfdb would misread: a
    gap (``~``) but in a variable layout after its layout header (wfdb 4.3 reads no gap in a fixed
    layout, nor a layout header named ``~``), or a segment naming the record itself or another
    multi-segment record (WFDB's segments are single-segment records: wfdb recurses into the
    record without end, or reads a cycle of two records as deep as their lengths go). Each
    segment's header is checked as a record's (:func:`_checked_header_file`), and must exist."""
    fixed = header.seg_len[0] != 0  # wfdb's rule: a variable layout's first segment, its layout header, has length 0
    checked = {"~"}
    for number, (segment, length) in enumerate(zip(header.seg_name, header.seg_len, strict=True), 1):
        where = f"segment line {number} of {header_file.name} ({segment} {length})"
        if segment == "~" and (fixed or number == 1):
            raise _fail(path, f"{where} is a gap ('~'), which wfdb reads in a variable layout only, after its layout "
                              "header (the first segment, of length 0)")
        if segment in checked:
            continue
        checked.add(segment)
        if segment == path.name:
            raise _fail(path, f"{where} names the record itself: a segment is another, single-segment record")
        segment_header = path.with_name(f"{segment}.hea")
        if not segment_header.is_file():
            raise _fail(path, f"file {segment_header.name} is missing (a segment of the record, named in "
                              f"{header_file.name})")
        if "/" in _checked_header_file(path.with_name(segment))[1][0][0]:  # its record line's "name/segments"
            raise _fail(path, f"{where} names a multi-segment record, where WFDB's segments are single-segment "
                              "records")


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
    if not isinstance(header, wfdb.Record):  # its first segment is no gap (read_header refuses one)
        header = _parsed_header(path.with_name(header.seg_name[0]))[2]
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


def _warn_default_fs(path: Path, header_file: Path, record_line: list[str]) -> None:
    """Warn, seen from the caller of the function calling this, when record ``path``'s record line
    (its fields) gives no sampling frequency: WFDB's default, :data:`DEFAULT_FS`, is assumed."""
    if len(record_line) < 3:
        warnings.warn(f"record '{record_label(path)}': file {header_file.name} gives no sampling frequency, so "
                      f"WFDB's default, {DEFAULT_FS:g} Hz, is assumed: add the rate to its record line if it is "
                      "another", stacklevel=3)


#: MAT version 4 type codes (little-endian, full numeric matrix), bytes a sample and content of the
#: WFDB formats a ``.mat`` signal file holds (``16+24``: 16-bit integers after the 24-byte MAT
#: header of the 3-letter name ``val``), as the WFDB tool ``wfdb2mat`` writes them (format 80, 8-bit
#: offset binary, as unsigned bytes).
MAT_V4_TYPES: dict[str, tuple[int, int, str]] = {
    "16": (30, 2, "16-bit integers"), "32": (20, 4, "32-bit integers"), "80": (50, 1, "8-bit unsigned integers"),
}  # fmt: skip

#: The size of a MAT version 4 matrix header before the matrix's name, in bytes: type, rows,
#: columns, imaginary flag and name length (with its closing 0), 32-bit integers.
MAT_V4_HEADER_BYTES = 20

#: The size of a MAT version 5 file's header, in bytes: a WFDB header that reads such a file from
#: a byte offset past it (``wfdb.wfdb_to_mat``'s ``16+192``) points at the data of its matrix,
#: whose tag (type and size, the 8 bytes before) must agree with the header's format and length.
MAT_V5_HEADER_BYTES = 128

#: MAT version 5 data types (miINT16, miINT32, miUINT8) of the WFDB formats a ``.mat`` signal
#: file holds.
MAT_V5_TYPES: dict[str, int] = {"16": 3, "32": 5, "80": 2}


def _check_mat_files(path: Path, record_line: list[str], signal_lines: list[list[str]]) -> None:
    """Check that each ``.mat`` signal file holds what its header's format says: a MAT version 4
    matrix of that integer type and shape, its data where the header's byte offset points and
    nothing after them (PhysioNet's CinC records, ``wfdb2mat``'s), or a MAT version 5 file read
    past its headers at data of that type and size (``wfdb_to_mat``'s). wfdb reads any file from
    the byte offset on, so a float64 copy, a MAT version 5 file (``scipy.io.savemat``'s default)
    read from byte 24, or a header whose offset is off by a byte would give wrong samples,
    silently. The signal lines are those :func:`_checked_header_file` passed (one format a file)."""
    files: dict[str, list[str]] = {}  # a .mat file's signals' format fields
    for line in signal_lines:
        if line[0].endswith(".mat"):
            files.setdefault(line[0], []).append(line[1])
    length = int(record_line[3]) if len(record_line) > 3 else None
    for name, fields in files.items():
        fmt, _, _, offset_field = _FORMAT_FIELD.match(fields[0]).groups()  # wfdb reads a file from its first's offset
        offset, signals, file = int(offset_field or 0), len(fields), path.parent / name
        if not file.is_file():
            continue  # reading names it
        if fmt not in MAT_V4_TYPES:
            *others, last = (f"{mat_fmt} ({what})" for mat_fmt, (_, _, what) in MAT_V4_TYPES.items())
            raise _fail(path, f"file {name} is read in format {fmt} by {path.name}.hea, but a .mat signal file holds "
                              f"format {', '.join(others)} or {last} only")
        _, size, what = MAT_V4_TYPES[fmt]
        with open(file, "rb") as f:
            head = f.read(MAT_V4_HEADER_BYTES)
            f.seek(max(offset - 8, 0))
            data_tag = f.read(8)  # a MAT v5 file's: the tag of the data the header points at
        problem: str | None
        if head.startswith(b"MATLAB 5.0"):
            kind, stored = struct.unpack("<2i", data_tag) if len(data_tag) == 8 else (None, None)
            wanted = None if length is None else length * signals * size
            if offset >= MAT_V5_HEADER_BYTES + 8 and kind == MAT_V5_TYPES[fmt] and wanted in (None, stored):
                continue  # read past its headers (wfdb_to_mat's 16+192), its data of the header's type and size
            problem = (f"is a MAT version 5 file whose data, where its header reads them from byte {offset}, are not "
                       f"{what} of {signals} signal(s) x {length} samples (CinC's files are MAT version 4: "
                       "scipy.io.savemat(..., format='4') with int16 values)")
        elif len(head) < MAT_V4_HEADER_BYTES:
            problem = f"is {len(head)} bytes long, shorter than a MAT version 4 header"
        else:
            problem = _mat_v4_problem(path, file, fmt, offset, signals, length, head)
            if problem is None:
                continue
        raise _fail(path, f"file {name} {problem}")


def _mat_v4_problem(path: Path, file: Path, fmt: str, offset: int, signals: int, length: int | None,
                    head: bytes) -> str | None:
    """What is wrong with MAT version 4 file ``file`` (its first :data:`MAT_V4_HEADER_BYTES`
    bytes ``head``), read by record ``path``'s header from byte ``offset`` in format ``fmt`` for
    ``signals`` signals of ``length`` samples (``None``: not given), or ``None``."""
    expected, size, what = MAT_V4_TYPES[fmt]
    kind, rows, columns, _, name_length = struct.unpack("<5i", head)
    start = MAT_V4_HEADER_BYTES + name_length  # the matrix's data, after its name
    shapes = [(signals, length)] + ([(length, 1)] if signals == 1 else [])  # one lead: either way
    if kind != expected:
        return f"holds MAT type {kind}, not {expected} ({what}, which its format {fmt} in {path.name}.hea reads)"
    if offset != start:
        return (f"holds its matrix's data from byte {start} (after a {MAT_V4_HEADER_BYTES}-byte MAT header and a "
                f"{name_length}-byte name), but {path.name}.hea reads it from byte {offset}: its format field should "
                f"be {fmt}+{start}")
    if length is not None and (rows, columns) not in shapes:
        return f"holds a {rows} x {columns} matrix, where {path.name}.hea gives {signals} signal(s) of {length} samples"
    found, needed = file.stat().st_size, start + rows * columns * size
    if found < needed:
        return (f"is truncated: expected {needed:,} bytes for its {rows} x {columns} matrix of {what} after a "
                f"{start}-byte MAT header, found {found:,}")
    if found > needed:
        return (f"holds {found - needed:,} bytes after its {rows} x {columns} matrix of {what} (another matrix? a "
                "WFDB .mat signal file holds one)")
    return None


def read_record(path: str | os.PathLike[str], leads: Sequence[str] | None = None) -> Record:
    """Read a record's signals with ``wfdb.rdrecord``.

    The header's lines are checked first (:func:`_checked_header_file`), and a ``.mat`` signal
    file's own header; when ``leads`` are asked for, the whole header with :func:`read_header`
    too, for their channels' positions (about a third more time on a small record), as for a
    multi-segment record, whose segments' headers it checks. When wfdb fails (reading or
    converting), or returns fewer samples than the header announces,
    :func:`read_header` finds out which file is at fault, so the error names it. The samples are
    read as digital values, compared with the header's checksums (which wfdb does not verify; a
    mismatch warns), then converted to physical units channel by channel (faster than wfdb's
    conversion of the (L, C) array), the samples of one frame of a multi-frequency signal
    averaged; a record with a signal in one of :data:`PHYSICAL_FORMATS` (61) is read in physical
    units and converted back for the checksums. A header whose record line names another record
    warns (a header copied from another record), and one without a sampling rate
    (:data:`DEFAULT_FS` is assumed). Multi-segment records are read by wfdb in physical units,
    their samples unchecked (their segments' headers hold the checksums); one whose segments give
    a lead in different units is refused.

    Args:
        path: record path without extension.
        leads: lead names to keep, in this order (by name, never by position: MIT-BIH record
            114 has MLII second); an entry ``"V1|V2|V4|V5"`` keeps the first of these the record
            has (:func:`~msresnet1d.data.preprocess.lead_positions`); ``""`` names a lead without
            a description; ``None`` keeps all.

    Returns:
        A :class:`Record` with ``signal`` (C, L) float32 in physical units.

    Raises:
        DataError: a file is missing, truncated or malformed (a header wfdb would misread, see
            the module's docstring), a lead is absent, or a multi-segment record's segments give
            a lead in different units.
    """
    path = Path(path)
    header_file, (record_line, *signal_lines) = _checked_header_file(path)
    if record_line[1] == "0" * len(record_line[1]):
        raise _fail(path, f"file {header_file.name} declares no signals (an annotation-only record): nothing to read")
    if len(record_line) > 3 and record_line[3].strip("0") == "":
        raise _fail(path, f"file {header_file.name} declares 0 samples a signal: nothing to read")
    _warn_default_fs(path, header_file, record_line)
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
    if multi_segment and leads is None:  # (_lead_channels reads the header)
        read_header(path)  # its segments checked: wfdb reads one naming the record itself without end
    try:
        record = wfdb.rdrecord(str(path), channels=channels, physical=physical, smooth_frames=multi_segment)
        if not multi_segment:
            if physical:  # the digital samples again, for the checksums (adc rounds: exactly)
                record.e_d_signal = record.adc(expanded=True)
            _check_checksums(path, record)
            if not physical:
                record.dac(expanded=True, inplace=True)
    except Warning:  # a warning raised as an error (-W error: a deprecation inside wfdb): not damage
        raise
    except Exception as exc:  # wfdb raises FileNotFoundError, ValueError, IndexError, KeyError...
        read_header(path)
        raise _fail(path, f"wfdb could not read the signals: {type(exc).__name__}: {exc}") from exc
    if multi_segment:
        if record.units is None:  # wfdb's sign of a variable layout whose segments' units differ
            raise _fail(path, "its segments give a lead in different physical units (wfdb gives none for the record), "
                              "which msresnet1d does not convert: write the segments in one unit")
        signal = np.ascontiguousarray(record.p_signal.T, dtype=np.float32)
    else:
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


def read_annotations(path: str | os.PathLike[str], extension: str = "atr", length: int | None = None) -> Annotations:
    """Read annotation file ``<path>.<extension>`` with ``wfdb.rdann`` and check it against
    the record's header. ``length``: the record's length in samples as read (``read_record``),
    which bounds the annotations where the header gives none.

    Warns when the header gives no sampling rate (WFDB's default, :data:`DEFAULT_FS`, is assumed,
    as in :func:`read_record`), when the file lacks WFDB's end-of-file marker (two zero bytes: it
    was cut at an even byte, and reads as far as it goes), or when the beat annotations stop more
    than :data:`UNANNOTATED_END` of the record (and more than 10 s) before its end (a truncated
    file, or one written at another rate: the warning gives the ratio of the record's length to the
    last beat's position, and the rate it suggests).

    Raises:
        DataError: the record's signal file; a missing or empty file, one of an odd size (WFDB's
            are 16-bit words), or one wfdb cannot read (damaged, truncated); an annotation code
            wfdb does not know; a sampling rate stored in the annotation file that differs from
            the header's; an annotation outside the signal.
    """
    path = Path(path)
    header_file, (record_line, *_), header = _read_header(path)
    _warn_default_fs(path, header_file, record_line)
    ann_file = path.with_name(f"{path.name}.{extension}")
    if ann_file.name in (getattr(header, "file_name", None) or []):
        raise _fail(path, f"file {ann_file.name} holds the record's samples ({header_file.name} names it), not "
                          "annotations: give the annotation file's extension (e.g. atr)")
    if not ann_file.is_file():
        raise _fail(path, f"file {ann_file.name} is missing")
    size = ann_file.stat().st_size
    if size == 0:  # wfdb reads it as no annotations
        raise _fail(path, f"file {ann_file.name} is empty (0 bytes), not a WFDB annotation file")
    if size % 2:  # wfdb's reader fails in numpy
        raise _fail(path, f"file {ann_file.name} is {size:,} bytes long, an odd number, where a WFDB annotation file "
                          "is 16-bit words (truncated? or not an annotation file)")
    try:
        ann = wfdb.rdann(str(path), extension, return_label_elements=["symbol", "label_store"])
    except Warning:  # a warning raised as an error (-W error: a deprecation inside wfdb): not damage
        raise
    except Exception as exc:  # IndexError...
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
    end = header.sig_len or length  # the header's length, else the samples read
    outside = (sample < 0) | (sample >= end) if end else sample < 0
    if outside.any():
        read = "" if header.sig_len else f", the samples read: {path.name}.hea gives no length"
        problem = f"{outside.sum()} annotation(s) outside the signal (0..{end}{read})"
        raise _fail(path, f"file {ann_file.name} has {problem}, first at sample {sample[outside][0]}")
    with open(ann_file, "rb") as f:
        f.seek(-2, os.SEEK_END)  # an empty file, or one of an odd size, is refused above
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
