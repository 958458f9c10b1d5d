# Shared helpers for the scripts in bin/. Sourced, never run.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
TOOLS="$ROOT/.tools"
FERRETDB_VERSION="v1.24.2"
FERRETDB="$TOOLS/bin/ferretdb"

say() { printf 'squad: %s\n' "$*" >&2; }
die() { printf 'squad: error: %s\n' "$*" >&2; exit 1; }

# The database binary: a real mongod on PATH wins over the embedded FerretDB.
database_kind() {
    if command -v mongod >/dev/null 2>&1; then echo mongod; else echo ferretdb; fi
}

# A free TCP port on 127.0.0.1 (the kernel picks it; a tiny race is acceptable for dev and tests).
free_port() {
    "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# What the FerretDB binary is built from: its version and our patches. A change rebuilds it.
ferretdb_recipe() {
    { echo "$FERRETDB_VERSION"; cat "$ROOT"/bin/patches/ferretdb-*.patch 2>/dev/null; } | sha256sum | cut -c1-16
}
