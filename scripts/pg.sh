#!/usr/bin/env bash
# pg.sh CMD [ARGS...]: run CMD beside a throwaway PostgreSQL.
#
# Installs Debian's postgresql package when no initdb is found (CI machines
# are root), makes a cluster with initdb in a temporary directory, starts it
# with pg_ctl listening on a Unix socket in that directory only (no TCP port
# to collide with anything else on the machine), exports
# RAYPLANE_TEST_POSTGRES=<dsn of its postgres database> for CMD, and stops and
# removes the cluster when CMD ends, however it ends. The tests create one
# database per test from that DSN. PostgreSQL refuses to run as root: as root
# the server runs as the package's `postgres` user, which owns the directory.
set -euo pipefail

if [ $# -eq 0 ]; then
	echo "usage: $0 CMD [ARGS...]" >&2
	exit 2
fi

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

start=$(date +%s.%N)
bin=$(find_bin)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "pg.sh: PostgreSQL is not installed and this is not root: apt-get install postgresql" >&2
		exit 1
	fi
	echo "pg.sh: installing Debian's postgresql package" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q postgresql >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }
	bin=$(find_bin)
fi
installed=$(date +%s.%N)

dir=$(mktemp -d /tmp/rayplane-pg.XXXXXX)
run_as=()
if [ "$(id -u)" -eq 0 ]; then
	id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/sh postgres
	chown postgres: "$dir"
	run_as=(runuser -u postgres --)
fi
chmod 700 "$dir"

cleanup() {
	"${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"${run_as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
	{ cat "$dir/initdb.log" >&2; exit 1; }
# Only the socket directory, which only the server's user can enter (root
# too, which runs the tests).
"${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
	-o "-c listen_addresses='' -c unix_socket_directories='$dir' -c max_connections=200" start >/dev/null ||
	{ cat "$dir/server.log" >&2; exit 1; }
ready=$(date +%s.%N)

export RAYPLANE_TEST_POSTGRES="postgres://postgres@/postgres?host=$dir&sslmode=disable"
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
echo "pg.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on $dir (install check $(secs "$start" "$installed") s, initdb and start $(secs "$installed" "$ready") s)" >&2
status=0
"$@" || status=$?
exit $status
