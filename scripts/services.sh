#!/usr/bin/env bash
# Makes PostgreSQL (with PostGIS) and Redis available and exports AMESA_DATABASE_URL and
# AMESA_REDIS_URL. URLs already set in the environment are used as they are; otherwise a
# project-local PostgreSQL cluster and Redis server are started under .data/ (once; later calls
# reuse them). Missing Debian packages are installed (as root, or with passwordless sudo).
#
#   source scripts/services.sh      what `make test` and `make run` do
#   scripts/services.sh stop        stop the project-local servers
#   scripts/services.sh status      show what runs

_amesa_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_amesa_data=$_amesa_root/.data
_amesa_pg_port=${AMESA_LOCAL_PG_PORT:-55432}
_amesa_redis_port=${AMESA_LOCAL_REDIS_PORT:-56379}

_amesa_log() { echo "amesa: $*" >&2; }

_amesa_apt() {
  local sudo=()
  if [[ $(id -u) != 0 ]]; then
    if ! sudo -n true 2>/dev/null; then
      _amesa_log "missing packages: $* — install them (apt-get install $*) or set AMESA_DATABASE_URL/AMESA_REDIS_URL"
      return 1
    fi
    sudo=(sudo -n)
  fi
  _amesa_log "installing Debian packages: $*"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

_amesa_pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n $dir && -x $dir/initdb ]] && echo "$dir"
}

# PostGIS must be installed wherever PostgreSQL runs on this machine.
_amesa_ensure_postgis() {
  local bindir version
  bindir=$(_amesa_pg_bindir) || return 0
  version=$(basename "$(dirname "$bindir")")
  if ! ls /usr/share/postgresql/"$version"/extension/postgis.control >/dev/null 2>&1; then
    _amesa_apt "postgresql-$version-postgis-3"
  fi
}

# As root, PostgreSQL's tools must run as the unprivileged postgres user.
_amesa_as_pg() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

_amesa_pg_dir() {
  local dir=$_amesa_data/postgres
  mkdir -p "$_amesa_data" && chmod 755 "$_amesa_data"
  if [[ $(id -u) == 0 ]] && ! runuser -u postgres -- test -x "$_amesa_data" 2>/dev/null; then
    # The checkout is not reachable by the postgres user (e.g. under /root): keep the cluster
    # in a per-checkout directory under /tmp instead.
    dir=/tmp/amesa-$(echo -n "$_amesa_root" | sha256sum | cut -c1-12)/postgres
  fi
  echo "$dir"
}

_amesa_start_postgres() {
  local bindir dir
  if [[ -z $(_amesa_pg_bindir) ]]; then
    _amesa_apt postgresql postgresql-contrib
  fi
  _amesa_ensure_postgis
  bindir=$(_amesa_pg_bindir)
  dir=$(_amesa_pg_dir)
  mkdir -p "$dir"
  [[ $(id -u) == 0 ]] && chown postgres:postgres "$dir" && chmod 700 "$dir"
  if [[ ! -f $dir/PG_VERSION ]]; then
    _amesa_log "creating a local PostgreSQL cluster in $dir"
    _amesa_as_pg "$bindir/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! _amesa_as_pg "$bindir/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    _amesa_log "starting PostgreSQL on 127.0.0.1:$_amesa_pg_port"
    export AMESA_LOCAL_SERVICES_STARTED=1
    _amesa_as_pg "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $_amesa_pg_port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=300 -c fsync=off" start >/dev/null
  fi
  export AMESA_DATABASE_URL="postgresql://postgres@127.0.0.1:$_amesa_pg_port/amesa"
}

_amesa_start_redis() {
  command -v redis-server >/dev/null || _amesa_apt redis-server
  mkdir -p "$_amesa_data/redis"
  if ! redis-cli -p "$_amesa_redis_port" ping >/dev/null 2>&1; then
    _amesa_log "starting Redis on 127.0.0.1:$_amesa_redis_port"
    export AMESA_LOCAL_SERVICES_STARTED=1
    redis-server --port "$_amesa_redis_port" --bind 127.0.0.1 --daemonize yes \
      --dir "$_amesa_data/redis" --pidfile "$_amesa_data/redis/redis.pid" \
      --logfile "$_amesa_data/redis/redis.log" --save '' --appendonly no >/dev/null
    for _ in $(seq 50); do redis-cli -p "$_amesa_redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  export AMESA_REDIS_URL="redis://127.0.0.1:$_amesa_redis_port/0"
}

_amesa_stop() {
  local bindir dir
  bindir=$(_amesa_pg_bindir) && dir=$(_amesa_pg_dir) && [[ -f $dir/PG_VERSION ]] &&
    _amesa_as_pg "$bindir/pg_ctl" -D "$dir" -m fast stop >/dev/null 2>&1 && _amesa_log "PostgreSQL stopped"
  redis-cli -p "$_amesa_redis_port" shutdown nosave >/dev/null 2>&1 && _amesa_log "Redis stopped"
  return 0
}

case "${1:-up}" in
  up)
    if [[ -z ${AMESA_DATABASE_URL:-} ]]; then _amesa_start_postgres; else _amesa_ensure_postgis; fi
    [[ -n ${AMESA_REDIS_URL:-} ]] || _amesa_start_redis
    ;;
  stop) _amesa_stop ;;
  status)
    echo "AMESA_DATABASE_URL=${AMESA_DATABASE_URL:-<local, port $_amesa_pg_port>}"
    echo "AMESA_REDIS_URL=${AMESA_REDIS_URL:-<local, port $_amesa_redis_port>}"
    ;;
  *) _amesa_log "usage: scripts/services.sh [up|stop|status]"; false ;;
esac
