# Shared helpers for the scripts in bin/. Sourced, never run.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
TOOLS="$ROOT/.tools"
FERRETDB_VERSION="v1.24.2"
# The SQLite under FerretDB: modernc.org/sqlite in place of the v1.32.0 (SQLite 3.46) that
# FerretDB's go.mod names (docs/database.md, section 14).
FERRETDB_SQLITE_MODULE="modernc.org/sqlite@v1.62.0"
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
    { echo "$FERRETDB_VERSION $FERRETDB_SQLITE_MODULE"; cat "$ROOT"/bin/patches/ferretdb-*.patch 2>/dev/null; } \
        | sha256sum | cut -c1-16
}

# Whether a Docker engine answers. A daemon that hangs must not hang bin/dev: 20 s is far more
# than a healthy one needs (where coreutils' timeout exists; macOS has none by default).
docker_answers() {
    if command -v timeout >/dev/null 2>&1; then
        timeout 20 docker info >/dev/null 2>&1
    else
        docker info >/dev/null 2>&1
    fi
}

# Where bin/dev and bin/teardown run things: DEV_MODE=compose when a Docker engine answers
# (`docker info`), DEV_MODE=embedded otherwise or when SQUAD_NO_DOCKER=1; DEV_REASON says why.
choose_dev_mode() {
    case "${SQUAD_NO_DOCKER:-}" in
        1|true|yes) DEV_MODE=embedded; DEV_REASON="SQUAD_NO_DOCKER=${SQUAD_NO_DOCKER} is set"; return ;;
    esac
    if ! command -v docker >/dev/null 2>&1; then
        DEV_MODE=embedded; DEV_REASON="there is no docker command on PATH"
    elif ! docker_answers; then
        DEV_MODE=embedded; DEV_REASON="no Docker engine answers ('docker info' failed)"
    else
        DEV_MODE=compose; DEV_REASON="a Docker engine answers ('docker info')"
    fi
}
COMPOSE_FILE="$ROOT/docker/compose.yaml"
