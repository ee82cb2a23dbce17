#!/usr/bin/env bash
# Install what is missing and bring up local services; safe to run again (each step checks first).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
APT_PACKAGES="postgresql-15-postgis-3 postgresql-15-pgrouting chromium fonts-nanum"
PSQL_FLAGS=(-v ON_ERROR_STOP=1 -q)
PG_ADMIN=()  # chosen when a database is first made (choose_admin_connection): with both URLs set, never

step() { printf '==> %s\n' "$*"; }

install_system_packages() {
  local missing=""
  for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
  done
  # Debian's python3 makes no virtual environment without python3-venv (ensurepip), needed until .venv exists.
  [ -x .venv/bin/python ] || python3 -c 'import ensurepip, venv' 2>/dev/null || missing="$missing python3-venv"
  # Any npm will do (Debian's, or NodeSource's nodejs, which brings its own and conflicts with Debian's).
  command -v npm >/dev/null 2>&1 || missing="$missing npm"
  if [ -n "$missing" ]; then
    step "installing Debian packages:$missing"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing
  fi
}

start_services() {
  if ! pg_isready -h 127.0.0.1 -q; then
    step "starting PostgreSQL"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
    for _ in $(seq 30); do pg_isready -h 127.0.0.1 -q && break; sleep 0.5; done
  fi
  if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
    step "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --logfile /tmp/redis-ansimi.log
    for _ in $(seq 30); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.2; done
  fi
}

install_python() {
  [ -x .venv/bin/python ] || { step "creating .venv"; python3 -m venv .venv; }
  local want have
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  have=$(cat .venv/.requirements.sha 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    step "installing Python requirements"
    .venv/bin/pip install -q -U pip
    .venv/bin/pip install -q -r requirements.txt
    echo "$want" > .venv/.requirements.sha
  fi
}

install_node() {
  local want have
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  have=$(cat node_modules/.lock.sha 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    step "installing front-end packages (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" > node_modules/.lock.sha
  fi
}

choose_admin_connection() {
  # The postgres role over TCP where pg_hba trusts it (this project's CI machines); otherwise as the postgres
  # system user over the local socket, which Debian's default pg_hba allows (peer) while TCP asks a password.
  if psql -h 127.0.0.1 -U postgres -w -Atc "SELECT 1" >/dev/null 2>&1; then
    PG_ADMIN=(psql -h 127.0.0.1 -U postgres "${PSQL_FLAGS[@]}")
  elif [ "$(id -u)" -eq 0 ]; then
    PG_ADMIN=(runuser -u postgres -- psql "${PSQL_FLAGS[@]}")
  else
    PG_ADMIN=(sudo -u postgres psql "${PSQL_FLAGS[@]}")
  fi
}

create_database() {  # $1 = database name, owned by the local default role (made here if missing)
  [ ${#PG_ADMIN[@]} -gt 0 ] || choose_admin_connection
  "${PG_ADMIN[@]}" -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='safety')
      THEN CREATE ROLE safety LOGIN SUPERUSER PASSWORD 'safety'; END IF; END \$\$;"
  "${PG_ADMIN[@]}" -tc "SELECT 1 FROM pg_database WHERE datname='$1'" | grep -q 1 \
    || "${PG_ADMIN[@]}" -c "CREATE DATABASE $1 OWNER safety"
  "${PG_ADMIN[@]}" -d "$1" -c "CREATE EXTENSION IF NOT EXISTS postgis" \
    -c "CREATE EXTENSION IF NOT EXISTS pgrouting" -c "CREATE EXTENSION IF NOT EXISTS btree_gist" \
    -c "ALTER DATABASE $1 SET jit = off"
}

install_system_packages
start_services
install_python
install_node
# Each local default database unless its URL points elsewhere: a DATABASE_URL of your own still leaves
# `make test` its default safety_test (and the safety role that owns it).
if [ -z "${DATABASE_URL:-}" ]; then
  create_database safety
fi
if [ -z "${TEST_DATABASE_URL:-}" ]; then
  create_database safety_test
fi
step "set-up complete"
