#!/usr/bin/env bash
# Throwaway test services on free loopback ports, in temp dirs. Source this file, call
# `start_services [postgres] [mariadb] [moto] [azurite] [smtp]`, and `stop_services` (test.sh traps it).
# Each started service exports the variables the test suites read:
#   DBBACKUP_TEST_PG_URL        postgres://postgres@127.0.0.1:PORT/postgres (TLS offered, not required)
#   DBBACKUP_TEST_PG_CA         the throwaway CA that signed the server's certificate (127.0.0.1,
#                               localhost); role dbbackup_tls may only log in over TLS, role
#                               dbbackup_cert only over TLS with DBBACKUP_TEST_PG_CLIENT_CERT/_KEY
#                               (signed by the same CA); DBBACKUP_TEST_PG_WRONG_CA signed nothing here
#   DBBACKUP_TEST_MYSQL_URL     mysql://root@127.0.0.1:PORT/mysql (TLS offered, not required)
#   DBBACKUP_TEST_MYSQL_CA      the same for MariaDB: users dbbackup_tls (REQUIRE SSL) and
#                               dbbackup_x509 (REQUIRE X509, with DBBACKUP_TEST_MYSQL_CLIENT_CERT/_KEY);
#                               DBBACKUP_TEST_MYSQL_WRONG_CA
#   DBBACKUP_TEST_S3_ENDPOINT   http://127.0.0.1:PORT   (bucket DBBACKUP_TEST_S3_BUCKET exists;
#                               moto accepts any credentials)
#   DBBACKUP_TEST_S3_IAM_ENDPOINT  a second moto (started with the first) that checks signatures and
#                               IAM policies: buckets DBBACKUP_TEST_S3_IAM_BUCKET_A/_B, and keys
#                               DBBACKUP_TEST_S3_IAM_KEY_A/_SECRET_A and _KEY_B/_SECRET_B of two
#                               users, each allowed s3:* on its own bucket only
#   DBBACKUP_TEST_AZURITE_URL   http://127.0.0.1:PORT/devstoreaccount1 (container DBBACKUP_TEST_AZ_CONTAINER)
#   DBBACKUP_TEST_SMTP_URL      smtp://127.0.0.1:PORT  the SMTP sink (scripts/smtp-sink.py, aiosmtpd):
#                               STARTTLS offered; DBBACKUP_TEST_SMTPS_URL smtps://127.0.0.1:PORT (TLS
#                               from the first byte); certificate signed by DBBACKUP_TEST_SMTP_CA; any
#                               user/password accepted once encrypted; each message written to
#                               DBBACKUP_TEST_SMTP_DIR/<time>-<n>.eml
# Nothing here needs the network beyond loopback, except package installs.

SERVICES_ROOT=${SERVICES_ROOT:-$(mktemp -d /tmp/dbbackup-services.XXXXXX)}
chmod 755 "$SERVICES_ROOT"
TOOLS_DIR=${DBBACKUP_TOOLS_DIR:-$HOME/.cache/dbbackup-test-tools}
_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_SERVICE_PIDS=()
_PG_DIRS=()

log() { printf '\033[1m[services]\033[0m %s\n' "$*" >&2; }

# A port for a service to listen on: free now, below the kernel's ephemeral range and not handed
# out before by this script ($SERVICES_ROOT/ports). The service binds it later (PostgreSQL after
# initdb, seconds later); a port from bind(0), as before, was in the ephemeral range, where any
# program's bind(0) or outgoing connection could take it meanwhile, and two calls before either
# service started (the SMTP sink's two ports) could return the same port.
free_port() {
  mkdir -p "$SERVICES_ROOT"
  python3 - "$SERVICES_ROOT/ports" <<'PY'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
try:
    taken = set(open(sys.argv[1]).read().split())
except OSError:
    taken = set()
for _ in range(1000):
    s = socket.socket()
    try:
        # Below the ephemeral range if it leaves room, else whatever bind(0) gives.
        s.bind(("127.0.0.1", random.randrange(10000, low) if low > 11000 else 0))
        port = s.getsockname()[1]
    except OSError:
        continue
    finally:
        s.close()
    if str(port) not in taken:
        open(sys.argv[1], "a").write(f"{port}\n")
        print(port)
        sys.exit(0)
sys.exit("free_port: no free port found")
PY
}

wait_for_port() { # port timeout_seconds name
  local port=$1 t=${2:-30} name=${3:-service}
  for _ in $(seq 1 $((t * 10))); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then exec 3>&- 3<&-; return 0; fi
    sleep 0.1
  done
  log "$name did not open port $port within ${t}s"; return 1
}

apt_install() { # packages...
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq >/dev/null || true
  # policy-rc.d keeps the packages from starting system-wide daemons.
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null; $sudo chmod +x /usr/sbin/policy-rc.d; fi
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

start_postgres() {
  apt_install postgresql postgresql-client openssl
  local bin; bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  local dir="$SERVICES_ROOT/pg" port; port=$(free_port)
  mkdir -p "$dir" && chown postgres:postgres "$dir" && chmod 700 "$dir"
  runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  pg_tls_files "$dir"
  # Role dbbackup_tls is refused on any TCP connection without TLS: the TLS tests log in as it,
  # so a client that silently fell back to plain text fails instead of passing.
  sed -i '1i hostnossl all dbbackup_tls all reject' "$dir/data/pg_hba.conf"
  # Role dbbackup_cert logs in only over TLS with a client certificate the CA signed (CN = role).
  sed -i '1i local all dbbackup_cert reject\nhostssl all dbbackup_cert all cert\nhost all dbbackup_cert all reject' "$dir/data/pg_hba.conf"
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_locks_per_transaction=1024 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c max_wal_size=4GB -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key -c ssl_ca_file=$dir/ca.crt" start >/dev/null
  _PG_DIRS+=("$bin|$dir")
  runuser -u postgres -- "$bin/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres \
    -c 'CREATE ROLE dbbackup_tls LOGIN SUPERUSER' -c 'CREATE ROLE dbbackup_cert LOGIN SUPERUSER' >/dev/null
  export DBBACKUP_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
  export DBBACKUP_TEST_PG_CA="$dir/ca.crt"
  export DBBACKUP_TEST_PG_CLIENT_CERT="$dir/client.crt" DBBACKUP_TEST_PG_CLIENT_KEY="$dir/client.key"
  export DBBACKUP_TEST_PG_WRONG_CA="$dir/wrong-ca.crt"
  export PATH="$bin:$PATH"
  log "PostgreSQL on 127.0.0.1:$port ($dir)"
}

pg_tls_files() { # dir: tls_files with a client certificate for role dbbackup_cert, the server's
  # key and certificate readable by the postgres server
  local dir=$1
  tls_files "$dir" dbbackup_cert
  chown postgres:postgres "$dir/server.key" "$dir/server.crt"
}

tls_files() { # dir [client_cn]: a throwaway CA (ca.crt, world-readable), a server certificate it
  # signs (127.0.0.1, localhost) and, with client_cn, a client certificate (client.crt/client.key)
  # for that user; wrong-ca.crt is a CA that signed nothing here (for "wrong CA" tests).
  local dir=$1 client=${2:-}
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=dbbackup test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 30 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
  if [ -n "$client" ]; then
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$client" \
      -keyout "$dir/client.key" -out "$dir/client.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$dir/client.ext"
    openssl x509 -req -in "$dir/client.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
      -days 30 -extfile "$dir/client.ext" -out "$dir/client.crt" 2>/dev/null
    chmod 600 "$dir/client.key"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=dbbackup unrelated CA" \
      -keyout "$dir/wrong-ca.key" -out "$dir/wrong-ca.crt" 2>/dev/null
    chmod 644 "$dir/client.crt" "$dir/wrong-ca.crt"
  fi
  rm -f "$dir/ca.key" "$dir/wrong-ca.key" "$dir"/*.csr "$dir"/*.ext "$dir/ca.srl"
  chmod 600 "$dir/server.key"
  chmod 644 "$dir/ca.crt" "$dir/server.crt"
}

start_mariadb() {
  apt_install mariadb-server mariadb-client
  local dir="$SERVICES_ROOT/mariadb" port; port=$(free_port)
  mkdir -p "$dir" && chown mysql:mysql "$dir"
  mariadb-install-db --no-defaults --user=mysql --datadir="$dir/data" --auth-root-authentication-method=normal >"$dir/install.log" 2>&1
  tls_files "$dir" dbbackup_x509
  chown mysql:mysql "$dir/server.key" "$dir/server.crt"
  mariadbd --no-defaults --user=mysql --datadir="$dir/data" --socket="$dir/sock" --port="$port" \
    --bind-address=127.0.0.1 --max-allowed-packet=1G --local-infile=1 --innodb-flush-log-at-trx-commit=0 \
    --innodb-buffer-pool-size=512M --log-bin="$dir/binlog" --server-id=1 --max-connections=300 \
    --log-error="$dir/error.log" --pid-file="$dir/pid" \
    --ssl-ca="$dir/ca.crt" --ssl-cert="$dir/server.crt" --ssl-key="$dir/server.key" >/dev/null 2>&1 &
  _SERVICE_PIDS+=($!)
  wait_for_port "$port" 60 MariaDB
  # dbbackup_tls may only log in over TLS, dbbackup_x509 only with a client certificate the CA
  # signed. Both also @localhost: 127.0.0.1 resolves to localhost, where the anonymous user of
  # mariadb-install-db would otherwise match first.
  local sql="" u h
  for u in "dbbackup_tls SSL" "dbbackup_x509 X509"; do
    for h in % localhost; do
      sql+="CREATE USER ${u% *}@'$h' REQUIRE ${u#* }; GRANT ALL ON *.* TO ${u% *}@'$h' WITH GRANT OPTION;"
    done
  done
  mariadb --no-defaults -uroot -S "$dir/sock" -e "$sql"
  export DBBACKUP_TEST_MYSQL_URL="mysql://root@127.0.0.1:$port/mysql"
  export DBBACKUP_TEST_MYSQL_SOCKET="$dir/sock"
  export DBBACKUP_TEST_MYSQL_CA="$dir/ca.crt" DBBACKUP_TEST_MYSQL_WRONG_CA="$dir/wrong-ca.crt"
  export DBBACKUP_TEST_MYSQL_CLIENT_CERT="$dir/client.crt" DBBACKUP_TEST_MYSQL_CLIENT_KEY="$dir/client.key"
  log "MariaDB on 127.0.0.1:$port ($dir)"
}

moto_venv() { # installs moto once; prints the venv
  local venv="$TOOLS_DIR/venv"
  if [ ! -x "$venv/bin/moto_server" ]; then
    log "installing moto[server] into $venv"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q 'moto[server]' azure-storage-blob >/dev/null
  fi
  echo "$venv"
}

start_moto() {
  local venv; venv=$(moto_venv)
  local port; port=$(free_port)
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$SERVICES_ROOT/moto.log" 2>&1 &
  _SERVICE_PIDS+=($!)
  wait_for_port "$port" 30 moto
  export DBBACKUP_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
  export DBBACKUP_TEST_S3_BUCKET=dbbackup-test
  "$venv/bin/python" - <<PY
import boto3
boto3.client("s3", endpoint_url="$DBBACKUP_TEST_S3_ENDPOINT", aws_access_key_id="test",
             aws_secret_access_key="test", region_name="us-east-1").create_bucket(Bucket="dbbackup-test")
PY
  log "moto S3 on 127.0.0.1:$port"
  start_moto_iam
}

start_moto_iam() { # a second moto that checks signatures and IAM policies (see the header)
  local venv; venv=$(moto_venv)
  local port; port=$(free_port)
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$SERVICES_ROOT/moto-iam.log" 2>&1 &
  _SERVICE_PIDS+=($!)
  wait_for_port "$port" 30 "moto (IAM)"
  # Two buckets, two users, each user's key allowed only on its own bucket. Set up while moto
  # still accepts anything, then /moto-api/reset-auth 0: from the next request on, every request
  # must be signed by a known key and be allowed by that key's user policy.
  local exports
  exports=$("$venv/bin/python" - "http://127.0.0.1:$port" <<'PY'
import json, sys, urllib.request
import boto3
endpoint = sys.argv[1]
kw = dict(endpoint_url=endpoint, aws_access_key_id="setup", aws_secret_access_key="setup", region_name="us-east-1")
s3, iam = boto3.client("s3", **kw), boto3.client("iam", **kw)
for n in ("A", "B"):
    bucket, user = f"dbbackup-iam-{n.lower()}", f"dbbackup-{n.lower()}"
    s3.create_bucket(Bucket=bucket)
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="own-bucket", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*",
                       "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    print(f"export DBBACKUP_TEST_S3_IAM_BUCKET_{n}={bucket}")
    print(f"export DBBACKUP_TEST_S3_IAM_KEY_{n}={key['AccessKeyId']} DBBACKUP_TEST_S3_IAM_SECRET_{n}={key['SecretAccessKey']}")
# (text/plain: moto reads the raw body, which Flask leaves empty for a form content type)
urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                             headers={"Content-Type": "text/plain"})).read()
PY
  )
  eval "$exports"
  export DBBACKUP_TEST_S3_IAM_ENDPOINT="http://127.0.0.1:$port"
  log "moto S3 with IAM on 127.0.0.1:$port"
}

start_azurite() {
  local dir="$TOOLS_DIR/azurite"
  if [ ! -x "$dir/node_modules/.bin/azurite-blob" ]; then
    log "installing azurite into $dir"
    mkdir -p "$dir" && (cd "$dir" && npm install --silent --no-audit --no-fund azurite >/dev/null)
  fi
  local venv="$TOOLS_DIR/venv"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import azure.storage.blob' 2>/dev/null; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q azure-storage-blob >/dev/null
  fi
  local port; port=$(free_port)
  mkdir -p "$SERVICES_ROOT/azurite"
  "$dir/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" --location "$SERVICES_ROOT/azurite" \
    --skipApiVersionCheck --loose --silent >"$SERVICES_ROOT/azurite.log" 2>&1 &
  _SERVICE_PIDS+=($!)
  wait_for_port "$port" 30 azurite
  export DBBACKUP_TEST_AZURITE_URL="http://127.0.0.1:$port/devstoreaccount1"
  export DBBACKUP_TEST_AZ_CONTAINER=dbbackup-test
  "$venv/bin/python" - <<PY
from azure.storage.blob import BlobServiceClient
key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
conn = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint=$DBBACKUP_TEST_AZURITE_URL;"
BlobServiceClient.from_connection_string(conn).create_container("dbbackup-test")
PY
  log "Azurite blob on 127.0.0.1:$port"
}

start_smtp() {
  apt_install openssl python3-venv
  local venv="$TOOLS_DIR/venv"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
    log "installing aiosmtpd into $venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q aiosmtpd >/dev/null
  fi
  local dir="$SERVICES_ROOT/smtp" port tls_port
  mkdir -p "$dir/mail"
  tls_files "$dir"
  port=$(free_port); tls_port=$(free_port)
  "$venv/bin/python" "$_SCRIPTS_DIR/smtp-sink.py" --dir "$dir/mail" --port "$port" \
    --tls-port "$tls_port" --cert "$dir/server.crt" --key "$dir/server.key" >"$SERVICES_ROOT/smtp.log" 2>&1 &
  _SERVICE_PIDS+=($!)
  wait_for_port "$port" 30 "SMTP sink" && wait_for_port "$tls_port" 30 "SMTP sink (TLS)"
  export DBBACKUP_TEST_SMTP_URL="smtp://127.0.0.1:$port"
  export DBBACKUP_TEST_SMTPS_URL="smtps://127.0.0.1:$tls_port"
  export DBBACKUP_TEST_SMTP_CA="$dir/ca.crt"
  export DBBACKUP_TEST_SMTP_DIR="$dir/mail"
  log "SMTP sink on 127.0.0.1:$port (STARTTLS) and :$tls_port (TLS), messages in $dir/mail"
}

start_services() {
  for s in "$@"; do "start_$s"; done
}

stop_services() {
  for entry in "${_PG_DIRS[@]}"; do
    local bin=${entry%%|*} dir=${entry#*|}
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  done
  for pid in "${_SERVICE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${_SERVICE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  _SERVICE_PIDS=(); _PG_DIRS=()
  rm -rf "$SERVICES_ROOT"
}
