"""Constants both ends of the HTTP API share (the server, the client, the load harness,
benchmarks): media types and websocket close codes. Defined here once."""

from __future__ import annotations

__all__ = ["GOING_AWAY", "NORMAL_CLOSURE", "SLOW_CONSUMER_CLOSE_CODE", "XLSX_MEDIA_TYPE"]

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Websocket close codes (RFC 6455): the job's stream ended after its terminal event ...
NORMAL_CLOSURE = 1000
# ... the service is shutting down ...
GOING_AWAY = 1001
# ... or the subscriber fell behind its bounded event buffer (4000-4999 are the application's).
SLOW_CONSUMER_CLOSE_CODE = 4008
