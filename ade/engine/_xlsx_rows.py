"""The rows of one .xlsx worksheet part, parsed as a stream: ``(row number, values)``.

Theory of operation. A worksheet part is XML, and nearly all of it is a long run of ``<row>``
elements whose cells come in a handful of exact shapes (``<c r="B7" s="3" t="s"><v>12</v></c>``,
inline strings, cached formula results). Building an element per cell and asking it for its
attributes costs ~40 µs per 12-cell row with the stdlib parser (about two thirds of an engine
run). So the parser has two paths that give the same values:

- the **fast path** reads the decompressed part in chunks and matches whole rows, then their
  cells, with one regular expression each, in C. Each cell's match is the *whole* grammar of the
  shapes above (attributes ``r``, ``s``, ``t`` in that order; an optional ``<f>``; ``<v>`` or an
  ``<is><t>`` of plain text). Anything else in a row — a character the cell pattern did not
  consume, an entity or character reference (``&``), a carriage return (XML normalizes it),
  a control character, U+FFFE/U+FFFF or ``]]>`` in text (XML refuses them), rich text, another
  attribute, a prefixed tag — sends *that row* to
- the **exact path**: the row's text parsed by ``xml.etree`` with the root's namespace
  declarations, and read by the same per-cell rules as a whole-sheet parse.

Where row boundaries themselves cannot be trusted from text — a comment, CDATA or processing
instruction inside ``<sheetData>`` (``</row>`` may hide in one), an end tag spelled
``</row >``, a reference in a row's attributes, a DOCTYPE, a namespace prefix
on the sheet's own elements, an encoding other than UTF-8 — the whole sheet is read by the
exact path, skipping the rows already yielded. What surrounds ``<sheetData>`` is fed to
``xml.etree`` too (rows left out), so a truncated or malformed part is refused as before.
"""

from __future__ import annotations

import codecs
import itertools
import re
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterator
from typing import IO, Any
from xml.etree.ElementTree import ParseError, fromstring, iterparse
from xml.parsers import expat

from ade.engine._csv import MAX_ROW_CELLS
from ade.errors import InputError

__all__ = ["Row", "SheetRows"]

Row = tuple[int, list[Any]]

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_ROW = _NS + "row"
_SHEET_DATA = _NS + "sheetData"
_VALUE = _NS + "v"
_INLINE = _NS + "is"
_DIGITS = "0123456789"
_CHUNK = 1 << 20  # decompressed bytes read at a time
_DATE_CACHE = 1 << 16  # distinct (serial, style) pairs remembered; dates repeat a lot

# Everything up to the start of <sheetData> (which must be unprefixed for the fast path).
_SHEET_DATA_START = re.compile(r"<(?:(\w+):)?sheetData\b[^>]*?(/?)>")
_ROOT_START = re.compile(r"<(?:\w+:)?worksheet\b[^>]*>")
_NAMESPACES = re.compile(r"""(\s(xmlns(?::[\w.-]+)?)\s*=\s*(?:"[^"]*"|'[^']*'))""")
_DECLARED_ENCODING = re.compile(r"""^<\?xml[^>]*encoding=["']([^"']+)["']""")
# Characters XML does not allow at all (expat refuses them), in a character class.
_NOT_XML = r"\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff"
# What may follow "<row" up to its ">": attributes whose values hold no "<" or ">", and no
# reference (a character reference may spell the row number) or character XML refuses.
_ROW_ATTRIBUTES = re.compile(
    rf"""(?:\s+[\w:.-]+=(?:"[^"<>&{_NOT_XML}]*"|'[^'<>&{_NOT_XML}]*'))*\s*/?"""
)
_ROW_NUMBER = re.compile(r"""(?:^|\s)r=["'](\d+)["']""")
# Text as XML has it, without references and carriage returns; "]" only where it does not
# start "]]>" (not allowed in text).
_TEXT_RUN = rf"[^<&\r\]{_NOT_XML}]*"
_TEXT = rf"{_TEXT_RUN}(?:\](?!\]>){_TEXT_RUN})*"
# A cell in one of the exact shapes, or one character that is not part of such a cell.
_CELLS = re.compile(
    r'<c r="([A-Z]{1,3})[0-9]+"(?: s="(0|[1-9][0-9]*)")?(?: t="([a-zA-Z]+)")?'
    r"(?:/>|>"
    rf"(?:<f\b[^<>&{_NOT_XML}]*/>|<f\b[^<>&{_NOT_XML}]*>{_TEXT}</f>)?"
    rf'(?:<v>({_TEXT})</v>|<is><t(?: xml:space="preserve")?>({_TEXT})</t></is>)?'
    r"</c>)"
    r"|(\S)"
)


# Column letters in order (A, B, ..., ZZ): a row whose cells carry exactly these is dense.
_A_TO_Z = [chr(code) for code in range(ord("A"), ord("Z") + 1)]
_LETTERS = _A_TO_Z + [first + second for first in _A_TO_Z for second in _A_TO_Z]


class _Restart(Exception):
    """The fast path met something it cannot split rows around: read the sheet exactly."""


class SheetRows:
    """Parses one worksheet part. ``open_source`` opens the part (a binary file object);
    ``shared_strings``, ``date_styles`` and ``timedelta_styles`` come from the workbook."""

    def __init__(
        self,
        input_name: str,
        sheet_name: str,
        open_source: Callable[[], IO[bytes]],
        shared_strings: list[Any],
        date_styles: frozenset[int],
        timedelta_styles: frozenset[int],
        epoch: Any,
        *,
        fast: bool = True,
    ) -> None:
        self.input_name = input_name
        self.sheet_name = sheet_name
        self.open_source = open_source
        self.shared_strings = shared_strings
        self.date_styles = date_styles
        self.timedelta_styles = timedelta_styles
        self._date_style_text = frozenset(str(s) for s in date_styles)
        self.epoch = epoch
        self.fast = fast  # False: the exact path only (tests compare the two)
        self.column_cache: dict[str, int] = {}
        self._dates: dict[tuple[str, str], Any] = {}
        self.rows_seen = 0  # <row> elements consumed so far (empty ones too)
        self.last_row = 0

    def rows(self) -> Generator[Row, None, None]:
        self.rows_seen = self.last_row = 0
        try:
            if self.fast:
                try:
                    yield from self._fast_rows()
                    return
                except _Restart:
                    pass
            yield from self._tree_rows(skip=self.rows_seen)
        except InputError:
            raise
        except (
            ParseError,
            expat.ExpatError,
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            KeyError,
            IndexError,  # a shared-string index past the table's end
            ValueError,  # includes UnicodeDecodeError
        ) as exc:
            raise InputError(
                f"input {self.input_name!r} sheet {self.sheet_name!r} is corrupt after row "
                f"{self.last_row} ({type(exc).__name__})"
            ) from exc

    # -- the fast path -------------------------------------------------------------------------

    def _fast_rows(self) -> Generator[Row, None, None]:
        with self.open_source() as src:
            chunks = _decoded_chunks(src)
            head, buffer, namespaces = self._head(chunks)
            # What surrounds <sheetData> must still be well-formed XML: a parser checks it
            # (expat alone: no tree is built, so a long tail such as mergeCells stays flat).
            frame = expat.ParserCreate()
            frame.Parse(head, False)
            ended = False
            for chunk in itertools.chain(chunks, ("",)):
                buffer += chunk
                if ended:
                    if len(buffer) > _CHUNK:  # the tail after </sheetData> is not held whole
                        frame.Parse(buffer, False)
                        buffer = ""
                    continue
                if "</sheetData>" in buffer:
                    cut = len(buffer)
                else:
                    cut = buffer.rfind("</row>") + 6
                    if cut < 6:
                        continue
                block, buffer = buffer[:cut], buffer[cut:]
                rest, ended = yield from self._block_rows(block, namespaces)
                if ended:
                    buffer = rest + buffer
            if not ended:
                raise _Restart  # no </sheetData>: the exact path says why
            frame.Parse(buffer, True)

    def _head(self, chunks: Iterator[str]) -> tuple[str, str, dict[str, str]]:
        """Text up to and including ``<sheetData>``, the text after it read with it, and the
        root's namespace declarations."""
        text = ""
        for chunk in chunks:
            text += chunk
            found = _SHEET_DATA_START.search(text)
            if found:
                break
        else:
            raise _Restart
        declared = _DECLARED_ENCODING.match(text)
        if (
            found.group(1)  # prefixed elements
            or found.group(2)  # <sheetData/>: no rows at all
            or "<!" in text[: found.start()]  # a DOCTYPE may define entities
            or (declared and declared.group(1).lower().replace("_", "-") not in ("utf-8", "utf8"))
        ):
            raise _Restart
        # Declarations in scope inside <sheetData> (its own win over the root's), for rows
        # parsed alone.
        root = _ROOT_START.search(text)
        namespaces: dict[str, str] = {}
        for tag in (root.group() if root else "", found.group()):
            for declaration, name in _NAMESPACES.findall(tag):
                namespaces[name] = declaration
        return text[: found.end()], text[found.end() :], namespaces

    def _block_rows(
        self, block: str, namespaces: dict[str, str]
    ) -> Generator[Row, None, tuple[str, bool]]:
        """Rows of ``block`` (text inside <sheetData>, whole rows only); returns (text from
        the end of <sheetData> on, whether it was reached)."""
        end = block.find("</sheetData>")
        inside = block if end < 0 else block[:end]
        if "<!" in inside or "<?" in inside:
            raise _Restart
        pos = 0
        while True:
            start = block.find("<", pos)
            if start < 0:
                if block[pos:].strip():
                    raise _Restart
                return "", False
            if start > pos and not block[pos:start].isspace():
                raise _Restart  # text between rows
            if block.startswith("</sheetData>", start):
                return block[start:], True
            tag_end = block.find(">", start)
            if tag_end < 0:
                raise _Restart
            attributes = block[start + 4 : tag_end]
            if not block.startswith("<row", start) or not _ROW_ATTRIBUTES.fullmatch(attributes):
                raise _Restart
            if attributes.endswith("/"):
                body = ""
                pos = tag_end + 1
            else:
                close = block.find("</row>", tag_end)
                if close < 0:
                    raise _Restart
                body = block[tag_end + 1 : close]
                if "</row" in body:
                    raise _Restart  # an end tag spelled "</row >": rows cannot be split here
                pos = close + 6
            if attributes.startswith(' r="') and (close_quote := attributes.find('"', 4)) > 4:
                row_number = int(attributes[4:close_quote])
            else:
                number = _ROW_NUMBER.search(attributes)
                row_number = int(number.group(1)) if number else self.last_row + 1
            self.rows_seen += 1
            self.last_row = row_number
            if not body:
                continue
            values = self._fast_values(body, row_number)
            if values is None:
                values = self._fragment_values(attributes, body, namespaces, row_number)
            if values:
                yield row_number, values
        return "", False

    def _fast_values(self, body: str, row_number: int) -> list[Any] | None:
        """The row's values, or None when a cell is not in one of the exact shapes."""
        refs: list[str] = []
        values: list[Any] = []
        shared = self.shared_strings
        dated = self._date_style_text
        dates = self._dates
        for letters, style, kind, text, inline, stray in _CELLS.findall(body):
            if stray:
                return None
            if kind == "inlineStr":
                if not inline:
                    continue
                value: Any = inline
            elif not text:
                continue
            elif not kind or kind == "n":
                if style and style in dated:
                    value = dates.get((text, style))
                    if value is None:
                        value = self._date(text, style)
                else:
                    try:
                        value = int(text)
                    except ValueError:
                        value = float(text)
            elif kind == "s":
                index = int(text)
                if index < 0:  # inline: the common cell of an Excel-saved sheet
                    raise IndexError(f"shared-string index {index}")
                value = shared[index]
                if not isinstance(value, str):
                    value = str(value)  # rich text
                if not value:
                    continue
            elif kind == "b":
                value = text == "1"
            elif kind == "d":
                from openpyxl.utils.datetime import from_ISO8601

                value = from_ISO8601(text)
            else:  # "str" (formula result) and "e" (an error such as #DIV/0!)
                value = text
            refs.append(letters)
            values.append(value)
        if refs == _LETTERS[: len(refs)]:  # the common case: a dense row from column A
            if len(values) > MAX_ROW_CELLS:
                return self._finish(list(enumerate(values, 1)), row_number, True)
            return values
        cache = self.column_cache
        cells = [(cache.get(r) or self._column(r), v) for r, v in zip(refs, values, strict=True)]
        return self._finish(cells, row_number, False)

    def _date(self, text: str, style: str) -> Any:
        key = (text, style)
        value = self._dates.get(key)
        if value is None:
            try:
                number: Any = int(text)
            except ValueError:
                number = float(text)
            value = self._number(number, int(style))
            if len(self._dates) >= _DATE_CACHE:
                self._dates.clear()
            self._dates[key] = value
        return value

    def _fragment_values(
        self, attributes: str, body: str, namespaces: dict[str, str], row_number: int
    ) -> list[Any]:
        """One row parsed alone, with the namespace declarations in scope where it stood."""
        own = {name for _, name in _NAMESPACES.findall(attributes)}
        inherited = "".join(d for name, d in namespaces.items() if name not in own)
        element = fromstring(f"<row{inherited}{attributes}>{body}</row>")
        return self._row_values(element, row_number)

    # -- the exact path ------------------------------------------------------------------------

    def _tree_rows(self, skip: int) -> Generator[Row, None, None]:
        with self.open_source() as src:
            sheet_data = None
            seen = 0
            row_number = 0
            # "start" events are only needed to find <sheetData>, so that each parsed
            # <row> can be dropped from it: otherwise the tree keeps every row.
            for event, element in iterparse(src, events=("start", "end")):
                if event == "end":
                    if element.tag == _ROW:
                        r = element.get("r")
                        row_number = int(r) if r else row_number + 1
                        seen += 1
                        if seen > skip:
                            self.last_row = row_number
                            values = self._row_values(element, row_number)
                        else:
                            values = []
                        if sheet_data is not None:
                            sheet_data.clear()
                        if values:
                            yield row_number, values
                elif element.tag == _SHEET_DATA:
                    sheet_data = element

    def _row_values(self, row: Any, row_number: int) -> list[Any]:
        cells: list[tuple[int, Any]] = []
        column = 0
        cache = self.column_cache
        for cell in row:
            ref = cell.get("r")
            if ref:
                letters = ref.rstrip(_DIGITS)
                column = cache.get(letters) or self._column(letters)
            else:
                column += 1
            kind = cell.get("t", "n")
            if kind == "inlineStr":
                value = _inline_text(cell)
            else:
                text = cell.findtext(_VALUE)
                if not text:
                    continue
                if kind == "n":
                    try:
                        number: Any = int(text)
                    except ValueError:
                        number = float(text)
                    style = cell.get("s")
                    value = self._number(number, int(style)) if style else number
                elif kind == "s":
                    value = self.shared_strings[_shared_index(text)]
                    if not isinstance(value, str):
                        value = str(value)  # rich text
                elif kind == "b":
                    value = text == "1"
                elif kind == "d":
                    from openpyxl.utils.datetime import from_ISO8601

                    value = from_ISO8601(text)
                else:  # "str" (formula result) and "e" (an error such as #DIV/0!)
                    value = text
            if value is None or value == "":
                continue
            cells.append((column, value))
        return self._finish(cells, row_number, _in_order(cells))

    # -- shared by both paths ------------------------------------------------------------------

    def _finish(self, cells: list[tuple[int, Any]], row_number: int, in_order: bool) -> list[Any]:
        if not cells:
            return []
        if len(cells) > MAX_ROW_CELLS:
            raise InputError(
                f"input {self.input_name!r} sheet {self.sheet_name!r} row {row_number} has "
                f"{len(cells)} filled cells; ADE reads at most {MAX_ROW_CELLS} columns per row"
            )
        if in_order:
            return [v for _, v in cells]  # the common case: a dense row starting at column A
        return _dense(cells, max(c for c, _ in cells))

    def _column(self, letters: str) -> int:
        from openpyxl.utils import column_index_from_string

        try:
            index = column_index_from_string(letters)
        except ValueError as exc:
            raise InputError(
                f"input {self.input_name!r} sheet {self.sheet_name!r} has a cell with an "
                "invalid reference"
            ) from exc
        self.column_cache[letters] = index
        return index

    def _number(self, value: Any, style: int) -> Any:
        if style in self.date_styles:
            from openpyxl.utils.datetime import from_excel

            try:
                return from_excel(value, self.epoch, timedelta=style in self.timedelta_styles)
            except (OverflowError, ValueError):
                return value  # a date-formatted number outside Excel's date range: keep it
        return value


def _decoded_chunks(src: IO[bytes]) -> Iterator[str]:
    """The part's text in chunks. Not UTF-8 (by its BOM): the exact path reads it."""
    first = src.read(_CHUNK)
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise _Restart
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    chunk = first
    while chunk:
        yield decoder.decode(chunk)
        chunk = src.read(_CHUNK)
    yield decoder.decode(b"", True)


def _shared_index(text: str) -> int:
    """A shared-string index; a negative one is corrupt (IndexError), not counted from the end
    of the table as a Python index would be."""
    index = int(text)
    if index < 0:
        raise IndexError(f"shared-string index {index}")
    return index


def _in_order(cells: list[tuple[int, Any]]) -> bool:
    return all(c == i for i, (c, _) in enumerate(cells, start=1))


def _dense(cells: list[tuple[int, Any]], last: int) -> list[Any]:
    values: list[Any] = [None] * last
    for column, value in cells:
        values[column - 1] = value
    return values


def _inline_text(cell: Any) -> str | None:
    child = cell.find(_INLINE)
    if child is None:
        return None
    return "".join(t for t in child.itertext()) or None
