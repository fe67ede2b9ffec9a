"""CSV inputs: the encoding and the delimiter decided explicitly, and said in the artifact.

Encoding rule (decided up front, at C speed, because finding a bad byte halfway through would
mean re-reading rows the engine already used):

* a UTF-16 byte order mark: ``utf-16`` (Excel's "Unicode text" export);
* a UTF-8 byte order mark, or no mark and the bytes are UTF-8: ``utf-8-sig`` / ``utf-8``;
* not UTF-8, no UTF-8 multi-byte sequence anywhere, and every non-ASCII byte is a Windows-1252
  character: ``cp1252`` (a legacy Excel "CSV" save);
* otherwise the file is UTF-8 with damaged bytes. It is read as UTF-8 with each undecodable
  sequence replaced by U+FFFD, and each becomes an error-level issue naming the input, the row
  and the byte offset (never the values). Never a silent re-encoding: reading such a file as
  latin-1 would turn every correct accented letter into two wrong ones.

Delimiter rule: the one a ``sep=X`` first line declares (Excel writes it); else, of ``,``
``;`` tab ``|``, the one that splits the most sample lines into the same number (two or more)
of fields; ties go in that order. A file none of them splits is one column.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Generator
from pathlib import Path
from typing import Any

import attrs

from ade.engine._artifact import CsvRecord
from ade.errors import InputError

__all__ = ["MAX_ROW_CELLS", "CsvSheet", "decide_delimiter", "decide_encoding", "open_csv"]

# Excel's own limit is 16,384 columns. A row that really fills more than this many cells is not
# a table a person maintains; refusing it keeps per-row work bounded (shared with the xlsx reader).
MAX_ROW_CELLS = 1024

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_SAMPLE_BYTES = 64 * 1024
_SAMPLE_LINES = 200
# The five byte values Windows-1252 leaves undefined.
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")


@attrs.frozen
class EncodingDecision:
    encoding: str
    reason: str
    bad_bytes: tuple[tuple[int, int], ...]  # (byte offset, 1-based line) of undecodable bytes


def decide_encoding(path: Path) -> EncodingDecision:
    with path.open("rb") as fh:
        head = fh.read(3)
    if head[:2] in _UTF16_BOMS:
        return EncodingDecision("utf-16", "UTF-16 byte order mark", ())
    bom = head == codecs.BOM_UTF8
    bad, multibyte, cp1252_ok = _scan_utf8(path, skip=3 if bom else 0)
    if not bad:
        if bom:
            return EncodingDecision("utf-8-sig", "UTF-8 byte order mark", ())
        reason = "valid UTF-8" if multibyte else "ASCII only (read as UTF-8)"
        return EncodingDecision("utf-8", reason, ())
    if not bom and not multibyte and cp1252_ok:
        return EncodingDecision(
            "cp1252",
            "not UTF-8: no UTF-8 multi-byte sequence, and every non-ASCII byte is a "
            "Windows-1252 character",
            (),
        )
    return EncodingDecision(
        "utf-8-sig" if bom else "utf-8",
        f"UTF-8 with {len(bad)} undecodable byte sequence(s), each replaced by U+FFFD "
        "and reported as an issue",
        tuple(bad),
    )


def _scan_utf8(path: Path, skip: int) -> tuple[list[tuple[int, int]], bool, bool]:
    """(bad sequences as (offset, line), any valid multi-byte sequence, all high bytes are
    defined in cp1252)."""
    bad: list[tuple[int, int]] = []
    multibyte = False
    cp1252_ok = True
    carry = b""
    base = skip  # file offset of data[0]
    lines = 1
    with path.open("rb") as fh:
        fh.seek(skip)
        while True:
            chunk = fh.read(1 << 20)
            data = carry + chunk
            if not data:
                break
            carry = b""
            pos = 0
            while pos < len(data):
                try:
                    text = data[pos:].decode("utf-8")
                    multibyte = multibyte or not text.isascii()
                    break
                except UnicodeDecodeError as exc:
                    start = pos + exc.start
                    if chunk and exc.reason == "unexpected end of data":
                        carry = data[start:]  # a sequence cut by the chunk's end
                        multibyte = multibyte or not data[pos:start].isascii()
                        data = data[:start]
                        break
                    multibyte = multibyte or not data[pos:start].decode("utf-8").isascii()
                    end = pos + exc.end
                    bad.append((base + start, lines + data.count(b"\n", 0, start)))
                    pos = end
            if cp1252_ok and not data.isascii():
                cp1252_ok = not _CP1252_UNDEFINED.intersection(data)
            lines += data.count(b"\n")
            base += len(data)
            if not chunk:
                break
    return bad, multibyte, cp1252_ok


def decide_delimiter(sample: str) -> tuple[str, str]:
    declared = sample[: sample.find("\n") + 1 or len(sample)].rstrip("\r\n")
    if len(declared) == 5 and declared.casefold().startswith("sep="):
        # Excel's own declaration ("sep=;" as the first line); the line itself is a row that
        # the config's row detectors place like any other.
        return declared[4], f"declared by the file's first line {declared!r}"
    lines = [line for line in sample.splitlines()[:_SAMPLE_LINES] if line.strip()]
    best: tuple[int, int, str] | None = None  # (lines agreeing, fields, delimiter)
    for delimiter in _DELIMITERS:
        counts: dict[int, int] = {}
        try:
            for fields in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter):
                if len(fields) >= 2:
                    counts[len(fields)] = counts.get(len(fields), 0) + 1
        except csv.Error:
            continue
        if not counts:
            continue
        fields, agreeing = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        if best is None or agreeing > best[0]:
            best = (agreeing, fields, delimiter)
    if best is None:
        return ",", "no delimiter splits any line: one column"
    agreeing, fields, delimiter = best
    return delimiter, (
        f"{_DELIMITER_NAMES[delimiter]}: splits {agreeing} of {len(lines)} sample line(s) "
        f"into {fields} fields"
    )


@attrs.define
class CsvSheet:
    """One CSV file as a sheet. ``decode_errors`` fills while rows are read: (row, offset)."""

    name: str
    path: Path
    input_name: str
    dialect: CsvRecord
    bad_bytes: tuple[tuple[int, int], ...]
    decode_errors: list[tuple[int, int]] = attrs.field(factory=list)

    def rows(self) -> Generator[tuple[int, list[Any]], None, None]:
        record = 0
        encoding = self.dialect.encoding
        bad = list(self.bad_bytes)
        b = 0  # next bad sequence to place
        try:
            with self.path.open("r", encoding=encoding, errors="replace", newline="") as fh:
                reader = csv.reader(fh, delimiter=self.dialect.delimiter)
                for record, raw in enumerate(reader, start=1):
                    line = reader.line_num
                    while b < len(bad) and bad[b][1] <= line:
                        # Undecodable bytes on the lines this record spans.
                        self.decode_errors.append((record, bad[b][0]))
                        b += 1
                    values = [v if v != "" else None for v in raw]
                    while values and values[-1] is None:
                        values.pop()
                    if not values:
                        continue
                    if len(values) > MAX_ROW_CELLS:
                        filled = sum(v is not None for v in values)
                        if filled > MAX_ROW_CELLS:
                            raise InputError(
                                f"input {self.input_name!r} row {record} has {filled} filled "
                                f"cells; ADE reads at most {MAX_ROW_CELLS} columns per row"
                            )
                    yield record, values
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(
                f"input {self.input_name!r} is not valid csv after row {record} "
                f"({type(exc).__name__})"
            ) from exc


def open_csv(path: Path, input_name: str) -> CsvSheet:
    decision = decide_encoding(path)
    try:
        with path.open("r", encoding=decision.encoding, errors="replace", newline="") as fh:
            sample = fh.read(_SAMPLE_BYTES)
    except UnicodeError as exc:  # UTF-16 with a cut code unit
        raise InputError(f"input {input_name!r} is not valid {decision.encoding} text") from exc
    delimiter, why = decide_delimiter(sample)
    dialect = CsvRecord(decision.encoding, decision.reason, delimiter, why)
    return CsvSheet(Path(input_name).stem or "csv", path, input_name, dialect, decision.bad_bytes)
