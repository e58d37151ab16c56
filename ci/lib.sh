# Shared set-up for the ci/ scripts: system packages (when root), .venv, editable build.
# Sourced, not run.  Idempotent and cheap when nothing changed.
set -euo pipefail

RIG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$RIG_ROOT"
VENV="${RIG_VENV:-$RIG_ROOT/.venv}"
PY="$VENV/bin/python"

log() { printf '[ci] %s\n' "$*" >&2; }

# Debian packages the build needs (gcc and the Python headers); extra ones as arguments.
ensure_system_packages() {
    local missing=()
    command -v gcc >/dev/null || missing+=(gcc)
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "apt-get install ${missing[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        log "missing system packages: ${missing[*]} (install them, or run as root)"
        return 1
    fi
}

# Optional packages (clang for the native-coverage build): installed when root, else a
# warning; what needs them falls back or skips, and says so.
want_system_packages() {
    ensure_system_packages "$@" || log "continuing without: $* (see the warnings below)"
}

# .venv with the package installed editable; rebuilt when a build input changed.
ensure_venv() {
    local extras="${1:-test,fuzz}"
    if [ ! -x "$PY" ]; then
        log "creating $VENV"
        python3 -m venv "$VENV"
        "$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    fi
    local stamp="$VENV/.rig-build-stamp"
    local want
    want="$extras $(cat setup.py pyproject.toml rig/core/cy/*.pyx rig/core/cy/*.pxd | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
            || ! "$PY" -c 'import rig.core.cy.iommu' 2>/dev/null; then
        log "pip install -e .[$extras] (builds the Cython core)"
        "$PY" -m pip install -q -e ".[$extras]" 2>&1 | grep -v -E '^\s*$|WARNING: Location' >&2 || true
        "$PY" -c 'import rig.core.cy.iommu' || { log "the Cython core did not build"; return 1; }
        echo "$want" > "$stamp"
    fi
}
