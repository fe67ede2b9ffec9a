from pathlib import Path

import pytest

from ade.settings import SETTINGS_DOC, Settings, SettingsError, load_settings


def test_defaults_match_the_documented_knobs() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.data_dir == Path("data")
    assert (settings.max_concurrency, settings.queue_size) == (2, 10)
    assert settings.job_timeout_seconds == 300.0
    assert (settings.worker_cpu_seconds, settings.worker_mem_mb, settings.worker_fsize_mb) == (
        60,
        512,
        100,
    )
    assert settings.db_path == Path("data/ade.sqlite")
    assert settings.jobs_dir == Path("data/jobs")
    assert settings.venvs_dir == Path("data/venvs")


def test_every_variable_is_read() -> None:
    env = {
        "ADE_DATA_DIR": "/srv/ade",
        "ADE_MAX_CONCURRENCY": "4",
        "ADE_QUEUE_SIZE": "25",
        "ADE_JOB_TIMEOUT_SECONDS": "12.5",
        "ADE_WORKER_CPU_SECONDS": "7",
        "ADE_WORKER_MEM_MB": "256",
        "ADE_WORKER_FSIZE_MB": "9",
        "ADE_WORKER_MAX_FILES": "128",
        "ADE_WORKER_MAX_PROCESSES": "32",
        "ADE_SHUTDOWN_GRACE_SECONDS": "3",
        "ADE_HOST": "0.0.0.0",
        "ADE_PORT": "9001",
        "ADE_MAX_UPLOAD_MB": "5",
        "ADE_MAX_JSON_KB": "32",
        "ADE_BODY_TIMEOUT_SECONDS": "7.5",
        "ADE_KEEP_ALIVE_SECONDS": "2",
        "ADE_MAX_CONNECTIONS": "300",
        "ADE_MAX_UNCOMPRESSED_MB": "50",
        "ADE_SANDBOX": "strict",
        "ADE_URL": "http://example.test:9001/",
        "ADE_DATABASE_URL": "postgresql://ade@db.example.test:5432/ade",
        "ADE_NODE_ID": "node-a.1",
        "ADE_LEASE_SECONDS": "4.5",
        "ADE_AUTH": "disabled",
        "ADE_API_KEY": "ade_x",
        "ADE_METRICS_TOKEN": "scrape-token-0123456789",
        "ADE_LOG_FORMAT": "json",
        "ADE_RETENTION_DAYS": "30",
        "ADE_WORKER_START": "spawn",
        "ADE_WORKER_NICE": "5",
    }
    settings = load_settings(env)
    assert settings == Settings(
        data_dir=Path("/srv/ade"),
        max_concurrency=4,
        queue_size=25,
        job_timeout_seconds=12.5,
        worker_cpu_seconds=7,
        worker_mem_mb=256,
        worker_fsize_mb=9,
        worker_max_files=128,
        worker_max_processes=32,
        shutdown_grace_seconds=3.0,
        host="0.0.0.0",
        port=9001,
        max_upload_mb=5,
        max_json_kb=32,
        body_timeout_seconds=7.5,
        keep_alive_seconds=2.0,
        max_connections=300,
        max_uncompressed_mb=50,
        sandbox="strict",
        url="http://example.test:9001",
        database_url="postgresql://ade@db.example.test:5432/ade",
        node_id="node-a.1",
        lease_seconds=4.5,
        auth="disabled",
        api_key="ade_x",
        metrics_token="scrape-token-0123456789",
        log_format="json",
        retention_days=30,
        worker_start="spawn",
        worker_nice=5,
    )
    assert set(env) == set(SETTINGS_DOC)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ADE_MAX_CONCURRENCY", "0", "ADE_MAX_CONCURRENCY: must be a whole number >= 1"),
        ("ADE_QUEUE_SIZE", "ten", "ADE_QUEUE_SIZE: cannot parse 'ten'"),
        ("ADE_JOB_TIMEOUT_SECONDS", "-1", "ADE_JOB_TIMEOUT_SECONDS: must be a finite number"),
        ("ADE_JOB_TIMEOUT_SECONDS", "inf", "ADE_JOB_TIMEOUT_SECONDS: must be a finite number"),
        ("ADE_WORKER_MEM_MB", "1.5", "ADE_WORKER_MEM_MB: cannot parse '1.5'"),
        ("ADE_PORT", "70000", "ADE_PORT: must be a TCP port"),
        ("ADE_SANDBOX", "off", "ADE_SANDBOX: must be 'strict' or 'best-effort'"),
        ("ADE_URL", "localhost:8000", "ADE_URL: must start with http:// or https://"),
        ("ADE_DATA_DIR", "   ", "ADE_DATA_DIR: must not be empty"),
        ("ADE_DATABASE_URL", "mysql://db/ade", "ADE_DATABASE_URL: must be a PostgreSQL URL"),
        ("ADE_NODE_ID", "a b", "ADE_NODE_ID: must be 1-63 letters"),
        ("ADE_LEASE_SECONDS", "0.5", "ADE_LEASE_SECONDS: must be a finite number of seconds >= 1"),
        ("ADE_AUTH", "off", "ADE_AUTH: must be 'enabled' or 'disabled'"),
        ("ADE_METRICS_TOKEN", "short", "ADE_METRICS_TOKEN: must be 16-256 printable"),
        ("ADE_METRICS_TOKEN", "has a space 0123456789", "ADE_METRICS_TOKEN: must be 16-256"),
        ("ADE_LOG_FORMAT", "xml", "ADE_LOG_FORMAT: must be 'text' or 'json'"),
        ("ADE_RETENTION_DAYS", "0", "ADE_RETENTION_DAYS: must be a whole number >= 1"),
        ("ADE_WORKER_START", "exec", "ADE_WORKER_START: must be 'fork' or 'spawn'"),
        ("ADE_WORKER_NICE", "-5", "ADE_WORKER_NICE: must be a nice value between 0 and 19"),
    ],
)
def test_a_bad_value_names_the_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as excinfo:
        load_settings({variable: value})
    assert str(excinfo.value).startswith(expected)
    assert excinfo.value.variable == variable


def test_empty_values_fall_back_to_defaults_and_overrides_win() -> None:
    settings = load_settings({"ADE_QUEUE_SIZE": ""}, queue_size=3)
    assert settings.queue_size == 3


def test_the_metrics_token_stays_out_of_repr() -> None:
    settings = load_settings({"ADE_METRICS_TOKEN": "sentinel-token-4f1c2a9e"})
    assert settings.metrics_token == "sentinel-token-4f1c2a9e"
    assert "sentinel-token-4f1c2a9e" not in repr(settings)
