# Sourced by scripts/run and scripts/test: create .venv with Python >= 3.11 and install ADE into it.
# Re-installs only when pyproject.toml changed since the last install.
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
if [ ! -x .venv/bin/python ]; then
    "$(pick_python)" -m venv .venv
fi
stamp=".venv/.ade-installed${ADE_VENV_EXTRAS:-}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".${ADE_VENV_EXTRAS:-}"
    touch "$stamp"
fi
