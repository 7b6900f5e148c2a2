#!/usr/bin/env bash
# Starts the lock servers the test suite talks to, idempotently: a server that already
# answers is left alone; a missing one is installed from Debian's packages and started.
# Needs root on Debian (as on CI). Usage: scripts/services.sh [redis] [postgres] [mariadb]
# [memcached] (no arguments: all of them).
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }

apt_updated=0
install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    apt_updated=1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# wait_for NAME SECONDS CMD...: runs CMD until it succeeds, for at most SECONDS.
wait_for() {
  local name=$1 limit=$2
  shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then
      log "$name did not come up within ${limit}s"
      return 1
    fi
    sleep 0.2
  done
  log "$name is up"
}

redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

start_redis() {
  # The Redis fault tests start their own redis-server processes (one with TLS, its
  # certificate made by openssl at test time) next to the shared one.
  command -v openssl >/dev/null 2>&1 || install openssl
  redis_up && { log "redis answers"; return 0; }
  install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for redis 30 redis_up
}

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432; }

start_postgres() {
  if ! postgres_up; then
    install postgresql postgresql-client
    local version
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    if [ -z "$(ls /etc/postgresql/"$version" 2>/dev/null)" ]; then
      pg_createcluster "$version" main >/dev/null
    fi
    local conf=/etc/postgresql/$version/main
    mkdir -p "$conf/conf.d"
    echo "listen_addresses = '127.0.0.1'" >"$conf/conf.d/lockattr.conf"
    if ! grep -q "lockattr" "$conf/pg_hba.conf"; then
      # Trust local connections, as on the development machines (tests log in as postgres).
      sed -i '1i host all all 127.0.0.1/32 trust # lockattr\nlocal all all trust # lockattr' "$conf/pg_hba.conf"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for postgres 60 postgres_up
  else
    log "postgres answers"
  fi
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" \
    | grep -q 1 || psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE test"
}

mariadb_up() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; }

start_mariadb() {
  mariadb_up && { log "mariadb answers"; return 0; }
  install mariadb-server mariadb-client
  mkdir -p /run/mysqld
  chown mysql:mysql /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_for "mariadb (socket)" 60 mariadb-admin --protocol=socket ping
  # A fresh install lets root in over the socket only: allow password-less TCP logins
  # from this machine, as on the development machines.
  mariadb --protocol=socket -u root -e "
    CREATE DATABASE IF NOT EXISTS test;
    CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
    GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
    ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
    FLUSH PRIVILEGES;"
  wait_for mariadb 30 mariadb_up
}

# Answers `version` with `VERSION …` on 127.0.0.1:11211.
memcached_up() {
  (
    exec 3<>/dev/tcp/127.0.0.1/11211 || exit 1
    printf 'version\r\n' >&3
    read -r -t 2 answer <&3 && [[ $answer == VERSION* ]]
  ) 2>/dev/null
}

start_memcached() {
  # The Memcached fault tests start their own memcached processes next to the shared one.
  command -v memcached >/dev/null 2>&1 || install memcached
  memcached_up && { log "memcached answers"; return 0; }
  # -u is required as root; the pid file is written after the switch to that user.
  mkdir -p /tmp/lockattr-mc
  chown memcache /tmp/lockattr-mc
  memcached -d -u memcache -l 127.0.0.1 -p 11211 -U 0 -m 64 -P /tmp/lockattr-mc/memcached.pid
  wait_for memcached 30 memcached_up
}

services=("$@")
[ ${#services[@]} -eq 0 ] && services=(redis postgres mariadb memcached)
for service in "${services[@]}"; do
  case "$service" in
    redis) start_redis ;;
    postgres) start_postgres ;;
    mariadb) start_mariadb ;;
    memcached) start_memcached ;;
    *) log "unknown service $service"; exit 2 ;;
  esac
done
