# Sourced by scripts/run and scripts/test: create the venv with Python >= 3.11 and install ADE into it.
# ADE_VENV names the venv directory (default .venv) and ADE_PYTHON the interpreter, so several
# interpreters can each keep their own venv side by side (.ci/run uses .venv-3.11 and .venv-3.13);
# a venv built by another Python version than ADE_PYTHON asks for is rebuilt, not reused.
# Re-installs only when pyproject.toml changed since the last install. An install with the test
# extras also satisfies a plain one, so ./scripts/run after ./scripts/test installs nothing.
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
# Is there an install stamp for these extras (or, for a plain install, for any extras) that is
# newer than pyproject.toml?
ade_installed() {
    local stamp
    for stamp in "$venv/.ade-installed${ADE_VENV_EXTRAS:-}" "$venv"/.ade-installed?*; do
        if [ -n "${ADE_VENV_EXTRAS:-}" ] && [ "$stamp" != "$venv/.ade-installed${ADE_VENV_EXTRAS}" ]; then
            continue
        fi
        if [ -f "$stamp" ] && ! [ pyproject.toml -nt "$stamp" ]; then
            return 0
        fi
    done
    return 1
}
if [ -x "$venv/bin/python" ] && [ -n "${ADE_PYTHON:-}" ] &&
    [ "$(python_version "$venv/bin/python")" != "$(python_version "$(pick_python)")" ]; then
    rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
    "$(pick_python)" -m venv "$venv"
fi
if ! ade_installed; then
    echo "installing ADE into $venv (first run, or pyproject.toml changed) ..." >&2
    # pip's and the build backend's chatter (setuptools' editable-install notice, index
    # warnings) goes to a log shown only when the install fails.
    log="$venv/ade-install.log"
    if ! { "$venv/bin/python" -m pip install --quiet --upgrade pip &&
        "$venv/bin/python" -m pip install --quiet -e ".${ADE_VENV_EXTRAS:-}"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "installing ADE into $venv failed (log above, also in $log)" >&2
        exit 1
    fi
    touch "$venv/.ade-installed${ADE_VENV_EXTRAS:-}"
fi
