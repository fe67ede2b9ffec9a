"""What ``ade submit --wait`` shows for each event: a progress bar on a terminal, plain lines
otherwise (logs, pipes, CI). A plain object: events in, text out; the command does the I/O."""

from __future__ import annotations

from typing import Any

from ade.models import TERMINAL_EVENT_TYPES

__all__ = ["PASSES", "ProgressView"]

PASSES = ("detect", "map", "transform", "validate", "write")
_BAR_WIDTH = 20
# Operators' material (a stderr tail): `ade jobs` and the job directory have it, not the bar.
_HIDDEN = frozenset({"diagnostics"})
_MAX_VALUE_CHARS = 160


class ProgressView:
    def __init__(self, *, terminal: bool) -> None:
        self.terminal = terminal
        self.finished_passes: list[str] = []
        self.current: str | None = None
        self.status = "queued"

    def render(self, event: dict[str, Any]) -> str:
        """The text to write for ``event`` (a bar redraw starts with a carriage return)."""
        kind = event.get("type", "?")
        detail = event.get("detail") or {}
        if kind == "start":
            self.status = "running"
        elif kind == "pass_started":
            self.current = str(detail.get("pass"))
        elif kind == "pass_finished" and detail.get("pass") not in self.finished_passes:
            self.finished_passes.append(str(detail.get("pass")))
        if kind in TERMINAL_EVENT_TYPES:
            self.status = str(detail.get("status", kind))
            if detail.get("outcome") in ("warnings", "errors"):
                self.status += f" with {detail['outcome']}"  # visible at a glance
        if self.terminal:
            return self._bar(kind in TERMINAL_EVENT_TYPES)
        return self._line(event)

    def _bar(self, final: bool) -> str:
        done = sum(1 for p in self.finished_passes if p in PASSES)
        filled = round(_BAR_WIDTH * done / len(PASSES))
        label = self.status if final or self.current is None else f"{self.status}: {self.current}"
        text = f"\r[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done}/{len(PASSES)} {label}"
        return text.ljust(60) + ("\n" if final else "")

    @staticmethod
    def _line(event: dict[str, Any]) -> str:
        detail = event.get("detail") or {}
        shown = " ".join(
            f"{key}={_short(value)}"
            for key, value in detail.items()
            if key not in _HIDDEN and (isinstance(value, str | int | float | bool) or value is None)
        )
        return f"{event.get('seq', '?'):>3} {event.get('type', '?')} {shown}".rstrip() + "\n"


def _short(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."
