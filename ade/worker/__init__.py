"""The worker subprocess: runs the engine for ONE job inside the sandbox.

Started by :mod:`ade.runtime.supervisor` as ``python -I -m ade.worker <job>/run-request.json
--events-fd N``. Kept import-light: this package is imported by the service too (for
:mod:`ade.worker.protocol`), and the worker must confine itself before loading anything heavy.
"""

from __future__ import annotations

__all__: list[str] = []
