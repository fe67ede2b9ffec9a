"""What a load-test run does, as one frozen value (built from the command line or by tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs

__all__ = [
    "CONFIG_KINDS",
    "WORKBOOK_KINDS",
    "LoadTestOptions",
    "OptionsError",
    "parse_mix",
]

# ok: a config that succeeds; fail: config code raises; timeout: sleeps past
# ADE_JOB_TIMEOUT_SECONDS; memory: allocates past ADE_WORKER_MEM_MB.
CONFIG_KINDS: tuple[str, ...] = ("ok", "fail", "timeout", "memory")
WORKBOOK_KINDS: tuple[str, ...] = ("tiny", "large")


class OptionsError(ValueError):
    """A load-test option is unusable; the message names the option."""


def parse_mix(option: str, text: str, kinds: tuple[str, ...]) -> dict[str, float]:
    """Parse ``"ok=8,fail=1"`` into normalised weights over ``kinds`` (missing kinds weigh 0)."""
    weights = dict.fromkeys(kinds, 0.0)
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, raw = part.partition("=")
        name = name.strip()
        if not sep or name not in kinds:
            raise OptionsError(
                f"{option}: {part!r} is not KIND=WEIGHT with KIND one of {', '.join(kinds)}"
            )
        try:
            weight = float(raw)
        except ValueError:
            raise OptionsError(
                f"{option}: weight {raw.strip()!r} of {name} is not a number"
            ) from None
        if not weight >= 0 or weight == float("inf"):
            raise OptionsError(f"{option}: weight of {name} must be a finite number >= 0")
        weights[name] = weight
    total = sum(weights.values())
    if total <= 0:
        raise OptionsError(f"{option}: at least one weight must be > 0 (got {text!r})")
    return {name: weight / total for name, weight in weights.items()}


def _fraction(option: str) -> Callable[[object, object, float], None]:
    def check(_instance: object, _attribute: object, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise OptionsError(f"{option} must be between 0 and 1, got {value}")

    return check


def _positive(option: str) -> Callable[[object, object, float | None], None]:
    def check(_instance: object, _attribute: object, value: float | None) -> None:
        if value is not None and not value > 0:
            raise OptionsError(f"{option} must be > 0, got {value}")

    return check


@attrs.frozen
class LoadTestOptions:
    """Every knob of one run. Defaults are the documented "standard" run (docs/loadtest.md)."""

    # Target: None starts a private `ade serve` on 127.0.0.1 with its own data dir.
    url: str | None = None
    # The target server's ADE_DATA_DIR when --url is used (enables the events.ndjson check).
    data_dir: Path | None = None
    # The API key to send with --url (default: ADE_API_KEY, else --data-dir's admin.key).
    api_key: str | None = attrs.field(default=None, repr=False)
    workspace: str = "default"
    clients: int = attrs.field(default=50, validator=_positive("--clients"))
    # Both bounds apply: the run stops at whichever comes first.
    duration: float = attrs.field(default=30.0, validator=_positive("--duration"))
    jobs: int | None = attrs.field(default=None, validator=_positive("--jobs"))
    workbook_mix: dict[str, float] = attrs.field(factory=lambda: {"tiny": 0.9, "large": 0.1})
    config_mix: dict[str, float] = attrs.field(
        factory=lambda: {"ok": 0.85, "fail": 0.05, "timeout": 0.05, "memory": 0.05}
    )
    tiny_rows: int = attrs.field(default=5, validator=_positive("--tiny-rows"))
    large_rows: int = attrs.field(default=2000, validator=_positive("--large-rows"))
    # Share of jobs followed over the websocket (the rest poll GET /jobs/{id}).
    watch_fraction: float = attrs.field(default=0.5, validator=_fraction("--watch-fraction"))
    cancel_fraction: float = attrs.field(default=0.05, validator=_fraction("--cancel-fraction"))
    retry_fraction: float = attrs.field(default=0.5, validator=_fraction("--retry-fraction"))
    greedy: bool = False
    chaos: bool = False
    # > 1: a private cluster of that many `ade serve` nodes on a PostgreSQL database of its
    # own (clients spread their requests over the nodes; --chaos SIGKILLs one node).
    nodes: int = attrs.field(default=1, validator=_positive("--nodes"))
    # The PostgreSQL server where a cluster run creates (and drops) its database.
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    seed: int | None = None
    # Knobs of the server the harness starts (ignored with --url except queue_size, which is
    # read from /api/v1/health when the server reports it).
    queue_size: int = attrs.field(default=10, validator=_positive("--queue-size"))
    max_concurrency: int = attrs.field(default=2, validator=_positive("--max-concurrency"))
    job_timeout: float = attrs.field(default=3.0, validator=_positive("--job-timeout"))
    worker_mem_mb: int = attrs.field(default=256, validator=_positive("--worker-mem-mb"))
    # How long after the load phase every accepted job may take to reach a terminal state.
    drain_timeout: float = attrs.field(default=120.0, validator=_positive("--drain-timeout"))
    poll_interval: float = attrs.field(default=0.25, validator=_positive("--poll-interval"))
    health_interval: float = attrs.field(default=0.1, validator=_positive("--health-interval"))
    # Per-request timeout: a request slower than this is a failure, not a slow success.
    request_timeout: float = attrs.field(default=30.0, validator=_positive("--request-timeout"))

    def __attrs_post_init__(self) -> None:
        if self.chaos and self.url is not None:
            raise OptionsError("--chaos needs a server the harness starts itself; drop --url")
        if self.nodes > 1 and self.url is not None:
            raise OptionsError("--nodes starts a private cluster; drop --url")
        if self.url is not None and not self.url.startswith("http://127.0.0.1"):
            raise OptionsError(
                f"--url must be a loopback URL (http://127.0.0.1:PORT), got {self.url}"
            )
        for name, mix, kinds in (
            ("--workbooks", self.workbook_mix, WORKBOOK_KINDS),
            ("--configs", self.config_mix, CONFIG_KINDS),
        ):
            if set(mix) - set(kinds) or not sum(mix.values()) > 0:
                raise OptionsError(f"{name}: weights over {', '.join(kinds)} with a positive sum")
