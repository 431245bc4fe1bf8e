# Throwaway PostgreSQL cluster for tests and the demo. Source this file, then:
#   pg_ensure_binaries   install PostgreSQL server binaries with apt if they are missing
#   pg_start             start a cluster on a Unix socket and a free loopback port;
#                        sets PG_URL (superuser, password auth over TCP)
#   pg_stop              stop it and delete its data directory
#   build_deps_ensure    install the TLS library's headers drainctl builds against
#                        (libssl-dev, pkg-config) with apt if they are missing
#   PG_TLS=1 pg_start    the same cluster, also offering TLS with a certificate for
#                        localhost and 127.0.0.1 signed by a throwaway authority:
#                        PG_TLS_ROOT is that authority's certificate, PG_TLS_OTHER_ROOT
#                        one of another authority that signed nothing
# The cluster never touches a system-wide one: its own data directory, its own port.
# initdb refuses to run as root, so as root the cluster runs as the `postgres` user.

PG_BIN=""
PG_DATA=""
PG_URL=""
PG_RUN_AS=()

pg_find_bin() {
  local dir
  for dir in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then PG_BIN="$dir"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    PG_BIN="$(dirname "$(command -v initdb)")"; return 0
  fi
  return 1
}

apt_install() {
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >&2
}

build_deps_ensure() {
  if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl; then return 0; fi
  echo "the TLS library's headers (libssl-dev, pkg-config) not found; installing them with apt-get" >&2
  apt_install libssl-dev pkg-config
}

# A throwaway certificate authority and a server certificate it signed, in folder $1.
pg_make_certificates() {
  local dir="$1"
  command -v openssl >/dev/null 2>&1 || { echo "openssl not found; installing it with apt-get" >&2; apt_install openssl; }
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -days 30 -subj "/CN=drainctl test authority" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$dir/root.key" -out "$dir/root.crt" 2>/dev/null || return 1
  openssl req -x509 "${ec[@]}" -days 30 -subj "/CN=drainctl other authority" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$dir/other-root.key" -out "$dir/other-root.crt" 2>/dev/null || return 1
  openssl req "${ec[@]}" -subj "/CN=localhost" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null || return 1
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
    > "$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/root.crt" -CAkey "$dir/root.key" -CAcreateserial \
    -days 30 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null || return 1
  # A client certificate for the role drainctl_cert, which the cluster lets in by it alone.
  openssl req "${ec[@]}" -subj "/CN=drainctl_cert" -keyout "$dir/client.key" -out "$dir/client.csr" 2>/dev/null || return 1
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' > "$dir/client.ext"
  openssl x509 -req -in "$dir/client.csr" -CA "$dir/root.crt" -CAkey "$dir/root.key" -CAcreateserial \
    -days 30 -extfile "$dir/client.ext" -out "$dir/client.crt" 2>/dev/null || return 1
  chmod 600 "$dir/server.key" "$dir/root.key" "$dir/other-root.key" "$dir/client.key"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir/server.key" "$dir/server.crt"
  return 0
}

pg_ensure_binaries() {
  pg_find_bin && return 0
  echo "PostgreSQL server binaries not found; installing them with apt-get" >&2
  apt_install postgresql
  # The Debian package may start a system cluster; ours never uses it.
  pg_find_bin || { echo "PostgreSQL installation failed: initdb not found" >&2; return 1; }
}

pg_free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local port
  for port in $(seq 54330 54430); do
    if ! (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "no free port found" >&2
  return 1
}

# Make a data directory that the cluster's user can reach: under target/ when it can,
# else a fresh temporary directory.
pg_make_data_dir() {
  local preferred="$1"
  mkdir -p "$preferred" && preferred="$(cd "$preferred" && pwd)"
  if [ "$(id -u)" -ne 0 ]; then
    mkdir -p "$preferred" && PG_DATA="$(mktemp -d "$preferred/cluster.XXXXXX")" && return 0
  else
    mkdir -p "$preferred"
    local candidate
    candidate="$(mktemp -d "$preferred/cluster.XXXXXX")"
    chown postgres: "$candidate"
    if runuser -u postgres -- test -w "$candidate"; then PG_DATA="$candidate"; return 0; fi
    rm -rf "$candidate"
  fi
  PG_DATA="$(mktemp -d /tmp/drainctl-pg.XXXXXX)"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$PG_DATA"; fi
}

pg_start() {
  local root="${1:-target/pg}"
  pg_ensure_binaries || return 1
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
    PG_RUN_AS=(runuser -u postgres --)
  else
    PG_RUN_AS=()
  fi
  pg_make_data_dir "$root" || return 1
  local port password
  port="$(pg_free_port)" || return 1
  password="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  printf '%s\n' "$password" > "$PG_DATA/.pwfile"
  chmod 600 "$PG_DATA/.pwfile"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DATA/.pwfile"
  "${PG_RUN_AS[@]}" "$PG_BIN/initdb" -D "$PG_DATA/data" -U postgres --pwfile="$PG_DATA/.pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$PG_DATA/initdb.log" 2>&1 \
    || { cat "$PG_DATA/initdb.log" >&2; return 1; }
  rm -f "$PG_DATA/.pwfile"
  local tls=""
  if [ "${PG_TLS:-0}" = 1 ]; then
    pg_make_certificates "$PG_DATA" || { echo "making the test certificates failed" >&2; return 1; }
    tls="-c ssl=on -c ssl_cert_file=$PG_DATA/server.crt -c ssl_key_file=$PG_DATA/server.key -c ssl_ca_file=$PG_DATA/root.crt"
    # The role drainctl_cert logs in by its certificate, checked against the authority.
    local hba="$PG_DATA/data/pg_hba.conf"
    { echo "hostssl all drainctl_cert 127.0.0.1/32 cert"; cat "$hba"; } > "$PG_DATA/pg_hba.new"
    cat "$PG_DATA/pg_hba.new" > "$hba" && rm -f "$PG_DATA/pg_hba.new"
    PG_TLS_ROOT="$PG_DATA/root.crt"
    PG_TLS_OTHER_ROOT="$PG_DATA/other-root.crt"
    PG_TLS_CLIENT_CERT="$PG_DATA/client.crt"
    PG_TLS_CLIENT_KEY="$PG_DATA/client.key"
    export PG_TLS_ROOT PG_TLS_OTHER_ROOT PG_TLS_CLIENT_CERT PG_TLS_CLIENT_KEY
  fi
  "${PG_RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA/data" -l "$PG_DATA/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$PG_DATA -c max_connections=400 -c fsync=off -c synchronous_commit=off -c track_commit_timestamp=on -c full_page_writes=off $tls" \
    start >/dev/null || { cat "$PG_DATA/server.log" >&2; return 1; }
  if [ "${PG_TLS:-0}" = 1 ]; then
    local psql="$PG_BIN/psql"
    [ -x "$psql" ] || psql="$(command -v psql || true)"
    [ -n "$psql" ] || { echo "psql not found beside $PG_BIN/initdb nor on PATH" >&2; return 1; }
    "${PG_RUN_AS[@]}" "$psql" -qX -h "$PG_DATA" -p "$port" -U postgres -d postgres \
      -c "CREATE ROLE drainctl_cert LOGIN SUPERUSER" >/dev/null || return 1
  fi
  PG_URL="postgres://postgres:${password}@127.0.0.1:${port}/postgres"
  export PG_URL PG_DATA
}

pg_stop() {
  if [ -n "$PG_DATA" ] && [ -d "$PG_DATA/data" ]; then
    "${PG_RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ -n "$PG_DATA" ]; then rm -rf "$PG_DATA"; fi
  PG_DATA=""
}

# pgbouncer for the pooler tests: installed with apt when missing. Never fatal: the tests
# that need it print why they were skipped. Sets and exports DRAINCTL_TEST_PGBOUNCER.
pgbouncer_ensure() {
  local found
  found="$(command -v pgbouncer 2>/dev/null || ls /usr/sbin/pgbouncer 2>/dev/null || true)"
  if [ -z "$found" ]; then
    echo "pgbouncer not found; installing it with apt-get" >&2
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq pgbouncer >&2 \
      || { "${sudo[@]}" apt-get update -qq >&2 \
           && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq pgbouncer >&2; } \
      || echo "pgbouncer could not be installed; the pooler tests will be skipped" >&2
    found="$(command -v pgbouncer 2>/dev/null || ls /usr/sbin/pgbouncer 2>/dev/null || true)"
  fi
  DRAINCTL_TEST_PGBOUNCER="$found"
  export DRAINCTL_TEST_PGBOUNCER
}
