# Sourced by scripts/run and scripts/test: create the venv with Python >= 3.11 and install ADE into it.
# ADE_VENV names the venv directory (default .venv) and ADE_PYTHON the interpreter, so several
# interpreters can each keep their own venv side by side (.ci/run uses .venv-3.11 and .venv-3.13).
# Re-installs only when pyproject.toml changed since the last install; a venv built by another
# Python version than the one asked for is rebuilt rather than silently reused.
pick_python() {
    for candidate in "${ADE_PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    echo "ADE needs Python >= 3.11 on PATH (or ADE_PYTHON=/path/to/python)" >&2
    return 1
}
python_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }
venv="${ADE_VENV:-.venv}"
if [ -x "$venv/bin/python" ] && [ -n "${ADE_PYTHON:-}" ] &&
    [ "$(python_version "$venv/bin/python")" != "$(python_version "$(pick_python)")" ]; then
    rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
    "$(pick_python)" -m venv "$venv"
fi
stamp="$venv/.ade-installed${ADE_VENV_EXTRAS:-}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e ".${ADE_VENV_EXTRAS:-}"
    touch "$stamp"
fi
