#!/usr/bin/env bash
# Installs, builds and starts Luma on this host. Steps: install what is missing
# (scripts/install-deps.sh), build Luma and the example image, create the Docker network, and
# start Caddy with its admin API on loopback unless one already responds. Then start Luma in the
# background and wait until its API responds through Caddy. Running it again restarts Luma, and
# Caddy and the containers stay up.
#
#   ./setup.sh [options] [luma flags]   install, build and (re)start
#   ./setup.sh stop [--remove-containers]
#                                       stop Luma and the Caddy that setup.sh started, and with
#                                       --remove-containers also every replica container of Luma
#   ./setup.sh status                   show what runs, exit 0 when Luma is up and healthy
#   ./setup.sh logs [-f] [--caddy]      print the last lines of Luma's (or Caddy's) log
#
# Files under the data directory: run/luma.pid, run/caddy.pid, run/setup.env (settings for
# status), logs/luma.log, logs/caddy.log, caddy/ (Caddy's data and config folders). Luma keeps
# services.json, instance-id and api-token in the same directory.
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly ROOT_DIR
readonly EXAMPLE_IMAGE="luma-example-hello:latest"
readonly DEFAULT_CADDY_ADMIN="http://127.0.0.1:2019"
# Seconds to wait for Luma's API to respond through Caddy after start.
readonly HEALTH_TIMEOUT="${SETUP_HEALTH_TIMEOUT:-90}"
# Seconds Luma gets to drain and exit after SIGTERM; its drain timeout is 30 s by default.
readonly STOP_TIMEOUT="${SETUP_STOP_TIMEOUT:-60}"

usage() {
  cat <<'EOF'
Usage:
  ./setup.sh [options] [luma flags]   install, build and (re)start Luma
  ./setup.sh stop [--data-dir DIR] [--remove-containers]
                                      stop Luma and the Caddy that setup.sh started; replica
                                      containers keep running unless --remove-containers
  ./setup.sh status [--data-dir DIR]  show what runs; exit 0 when Luma is up and healthy
  ./setup.sh logs [--data-dir DIR] [--caddy] [-f] [-n LINES]
                                      print Luma's log (or Caddy's with --caddy)

Options:
  --data-dir DIR    data directory (default $LUMA_DATA_DIR, else /var/lib/luma); also passed to Luma
  --network NAME    Docker network for replicas (default $LUMA_NETWORK, else luma); also passed to Luma
  --no-install      skip scripts/install-deps.sh
  --no-build        skip `npm run build` and the example image
  -h, --help        print this help

Every other argument is a Luma flag and goes to ./bin/luma unchanged, for example
  ./setup.sh -port=9000 -inactivity-timeout=5m -scale-threshold=50
setup.sh also reads -port (for the health check) and -caddy-admin (to find or start Caddy).
Run ./bin/luma -help after a build for the list of flags.

Environment:
  LUMA_*                  Luma's settings, read by setup.sh (data dir, network, port, Caddy admin)
                          and by Luma; a flag wins over its variable
  SETUP_HEALTH_TIMEOUT    seconds to wait for Luma's health check after start (default 90)
  SETUP_STOP_TIMEOUT      seconds Luma gets to exit after SIGTERM before SIGKILL (default 60)
EOF
}

say() { printf 'setup: %s\n' "$*"; }
fail() {
  printf 'setup: error: %s\n' "$*" >&2
  exit 1
}

# --- arguments ----------------------------------------------------------------------------------

command_name=start
case "${1:-}" in
  start | stop | status | logs)
    command_name=$1
    shift
    ;;
esac

data_dir="${LUMA_DATA_DIR:-/var/lib/luma}"
network="${LUMA_NETWORK:-luma}"
port="${LUMA_PORT:-8080}"
caddy_admin="${LUMA_CADDY_ADMIN:-$DEFAULT_CADDY_ADMIN}"
run_install=1
run_build=1
follow=0
log_name=luma
log_lines=100
remove_containers=0
luma_args=()

# Reads the settings that setup.sh needs from Luma's flags, in the forms Luma accepts
# (-name=value, -name value, --name=value, --name value), and keeps the other flags for Luma.
while (($# > 0)); do
  argument=$1
  shift
  if [[ $argument != -* ]]; then
    [[ $command_name == start ]] || fail "unknown argument '${argument}' for ./setup.sh ${command_name} (see --help)"
    luma_args+=("$argument")
    continue
  fi

  name=${argument#-}
  name=${name#-}
  value=""
  has_value=0
  if [[ $name == *=* ]]; then
    value=${name#*=}
    name=${name%%=*}
    has_value=1
  fi

  case "$command_name:$name" in
    *:h | *:help)
      usage
      exit 0
      ;;
    start:version) exec "$ROOT_DIR/bin/luma" -version ;;
    start:no-install) run_install=0 ;;
    start:no-build) run_build=0 ;;
    logs:caddy) log_name=caddy ;;
    stop:remove-containers) remove_containers=1 ;;
    logs:f | logs:follow) follow=1 ;;
    logs:n | *:data-dir | start:network | start:port | start:caddy-admin)
      if ((has_value == 0)); then
        (($# > 0)) || fail "flag ${argument} needs a value, for example ${argument}=VALUE"
        value=$1
        shift
      fi
      case "$name" in
        n) log_lines=$value ;;
        # Passed to Luma as LUMA_DATA_DIR, made absolute, because Luma runs in another folder.
        data-dir) data_dir=$value ;;
        network) network=$value ;;
        port) port=$value ;;
        caddy-admin) caddy_admin=$value ;;
      esac
      if [[ $name == network || $name == port || $name == caddy-admin ]]; then
        luma_args+=("-${name}=${value}")
      fi
      ;;
    start:*) luma_args+=("$argument") ;;
    *) fail "unknown option '${argument}' for ./setup.sh ${command_name} (see --help)" ;;
  esac
done

[[ $data_dir == /* ]] || data_dir="$PWD/$data_dir"
[[ $port =~ ^[0-9]+$ ]] || fail "-port must be a number, got '${port}'"
[[ $log_lines =~ ^[0-9]+$ ]] || fail "-n must be a number of lines, got '${log_lines}'"

readonly run_dir="$data_dir/run"
readonly log_dir="$data_dir/logs"
readonly luma_pid_file="$run_dir/luma.pid"
readonly caddy_pid_file="$run_dir/caddy.pid"
readonly settings_file="$run_dir/setup.env"
readonly luma_log="$log_dir/luma.log"
readonly caddy_log="$log_dir/caddy.log"

# --- processes ----------------------------------------------------------------------------------

# Prints the pid from a pid file when that process is alive and its command line contains the
# expected text, so a pid reused by another program is never signalled.
live_pid() {
  local file=$1 expected=$2 pid
  [[ -r $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$expected" || return 1
  printf '%s\n' "$pid"
}

# Sends SIGTERM, waits up to the timeout, then sends SIGKILL.
stop_process() {
  local pid=$1 label=$2 timeout=$3 deadline
  say "stopping ${label} (pid ${pid})"
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      say "${label} (pid ${pid}) still running after ${timeout}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
}

print_tail() {
  local file=$1
  [[ -f $file ]] || return 0
  printf 'setup: last lines of %s:\n' "$file" >&2
  tail -n 30 "$file" >&2
}

# --- Caddy --------------------------------------------------------------------------------------

# curl arguments that reach the admin API: an http origin or a unix socket.
admin_curl_args() {
  case "$caddy_admin" in
    http://* | https://*) printf '%s\n' "${caddy_admin%/}/config/" ;;
    unix//*) printf '%s\n' --unix-socket "/${caddy_admin#unix//}" "http://localhost/config/" ;;
    unix://*) printf '%s\n' --unix-socket "${caddy_admin#unix://}" "http://localhost/config/" ;;
    unix:*) printf '%s\n' --unix-socket "${caddy_admin#unix:}" "http://localhost/config/" ;;
    /*) printf '%s\n' --unix-socket "$caddy_admin" "http://localhost/config/" ;;
    *) fail "-caddy-admin must be an http:// origin or a unix socket path, got '${caddy_admin}'" ;;
  esac
}

caddy_responds() {
  local -a args
  mapfile -t args < <(admin_curl_args)
  curl -fsS --max-time 2 -o /dev/null "${args[@]}" 2>/dev/null
}

# Caddy's notation for the admin listener: host:port, or unix//path for a socket.
admin_listen_address() {
  local hostport
  case "$caddy_admin" in
    http://*)
      hostport=${caddy_admin#http://}
      hostport=${hostport%/}
      case "$hostport" in
        127.* | localhost:* | "[::1]":*) printf '%s\n' "$hostport" ;;
        *) fail "setup.sh starts Caddy only with a loopback admin address (the admin API has no authentication), got ${caddy_admin}" ;;
      esac
      ;;
    https://*) fail "setup.sh cannot start Caddy with an https admin endpoint (${caddy_admin}); start Caddy yourself or use http://127.0.0.1:PORT" ;;
    unix//*) printf '%s\n' "$caddy_admin" ;;
    unix://*) printf 'unix/%s\n' "${caddy_admin#unix://}" ;;
    unix:*) printf 'unix/%s\n' "${caddy_admin#unix:}" ;;
    /*) printf 'unix/%s\n' "$caddy_admin" ;;
  esac
}

start_caddy() {
  local pid config listen deadline
  if caddy_responds; then
    if pid=$(live_pid "$caddy_pid_file" caddy); then
      say "Caddy (pid ${pid}, started by setup.sh) responds at ${caddy_admin}"
    else
      say "using the Caddy that responds at ${caddy_admin}"
    fi
    return 0
  fi

  if pid=$(live_pid "$caddy_pid_file" caddy); then
    # Ours, but its admin API does not respond at the configured address (a changed
    # -caddy-admin, or a Caddy that hangs): replace it.
    stop_process "$pid" Caddy 15
  fi

  listen=$(admin_listen_address)
  config="$ROOT_DIR/caddy/caddy.json"
  if [[ $caddy_admin != "$DEFAULT_CADDY_ADMIN" ]]; then
    # Same bootstrap config with the admin listener moved to the configured address.
    config="$data_dir/caddy/caddy.json"
    node -e '
      const fs = require("node:fs");
      const [source, listen, target] = process.argv.slice(1);
      const config = JSON.parse(fs.readFileSync(source, "utf8"));
      config.admin.listen = listen;
      fs.writeFileSync(target, JSON.stringify(config, null, 2) + "\n");
    ' "$ROOT_DIR/caddy/caddy.json" "$listen" "$config"
  fi

  say "starting Caddy with ${config} (admin API ${listen}), log ${caddy_log}"
  rm -f "$caddy_pid_file"
  # XDG folders keep Caddy's certificates and state under the data directory. The working
  # directory matters: `caddy run` loads ./Caddyfile when one is present.
  (
    cd "$data_dir/caddy"
    export XDG_DATA_HOME="$data_dir/caddy/data" XDG_CONFIG_HOME="$data_dir/caddy/config"
    exec setsid nohup caddy run --config "$config" --pidfile "$caddy_pid_file" >>"$caddy_log" 2>&1 </dev/null 9>&-
  ) &
  pid=$!

  deadline=$((SECONDS + 15))
  until caddy_responds; do
    if ! kill -0 "$pid" 2>/dev/null; then
      print_tail "$caddy_log"
      fail "Caddy exited during start-up"
    fi
    if ((SECONDS >= deadline)); then
      print_tail "$caddy_log"
      fail "Caddy's admin API does not respond at ${caddy_admin} after 15s"
    fi
    sleep 0.2
  done
  say "Caddy (pid ${pid}) is running"
}

# --- Luma ---------------------------------------------------------------------------------------

stop_luma() {
  local pid
  if pid=$(live_pid "$luma_pid_file" "$ROOT_DIR/bin/luma"); then
    stop_process "$pid" Luma "$STOP_TIMEOUT"
  fi
  rm -f "$luma_pid_file"
}

health_url() { printf 'http://127.0.0.1:%s/api/health\n' "$port"; }

start_luma() {
  local pid deadline
  say "starting Luma: ./bin/luma ${luma_args[*]}, log ${luma_log}"
  (
    cd "$ROOT_DIR"
    export LUMA_DATA_DIR="$data_dir"
    exec setsid nohup "$ROOT_DIR/bin/luma" "${luma_args[@]+"${luma_args[@]}"}" >>"$luma_log" 2>&1 </dev/null 9>&-
  ) &
  pid=$!
  printf '%s\n' "$pid" >"$luma_pid_file"

  say "waiting up to ${HEALTH_TIMEOUT}s for $(health_url)"
  deadline=$((SECONDS + HEALTH_TIMEOUT))
  until curl -fsS --max-time 2 -o /dev/null "$(health_url)" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$luma_pid_file"
      print_tail "$luma_log"
      fail "Luma exited during start-up"
    fi
    if ((SECONDS >= deadline)); then
      print_tail "$luma_log"
      fail "Luma (pid ${pid}) does not respond at $(health_url) after ${HEALTH_TIMEOUT}s; it is still running, see ./setup.sh logs"
    fi
    sleep 0.5
  done
  say "Luma (pid ${pid}) is running"
}

print_next_steps() {
  local base="http://localhost:${port}"
  cat <<EOF

Luma is running. Caddy serves the API and every service on ${base}.

Register the example service:

  curl -X POST ${base}/api/services \\
    -H "Content-Type: application/json" \\
    -d '{"name": "hello", "image": "${EXAMPLE_IMAGE}", "minReplicas": 0, "maxReplicas": 10}'

List services:

  curl ${base}/api/services

Call the service (the first request starts a container):

  curl ${base}/hello/

Requests from other hosts need the API token:
  -H "Authorization: Bearer \$(cat ${data_dir}/api-token)"

Manage: ./setup.sh status | ./setup.sh logs -f | ./setup.sh stop
EOF
}

# --- commands -----------------------------------------------------------------------------------

cmd_start() {
  if [[ ! -d $data_dir ]]; then
    mkdir -p "$data_dir" 2>/dev/null || fail "cannot create ${data_dir}: run as root or pass --data-dir DIR"
    chmod 0700 "$data_dir"
  fi
  [[ -w $data_dir ]] || fail "${data_dir} is not writable: run as root or pass --data-dir DIR"
  mkdir -p "$run_dir" "$log_dir" "$data_dir/caddy"

  # One setup.sh at a time per data directory. Every child that may keep running (dockerd,
  # Caddy, Luma) gets 9>&- so that it does not hold the lock after setup.sh exits.
  exec 9>"$run_dir/setup.lock"
  flock -n 9 || fail "another ./setup.sh is running for ${data_dir}"

  if ((run_install)); then
    bash "$ROOT_DIR/scripts/install-deps.sh" 9>&-
  fi
  if ((run_build)); then
    say "building Luma (npm run build)"
    (cd "$ROOT_DIR" && npm run --silent build)
    [[ -d $ROOT_DIR/examples/hello ]] || fail "examples/hello not found in ${ROOT_DIR}"
    bash "$ROOT_DIR/scripts/build-image.sh" "$EXAMPLE_IMAGE" "$ROOT_DIR/examples/hello" 9>&-
  fi

  if docker network inspect "$network" >/dev/null 2>&1; then
    say "Docker network ${network} exists"
  else
    say "creating Docker network ${network}"
    docker network create --driver bridge --label dev.luma.created-by=setup.sh "$network" >/dev/null
  fi

  start_caddy
  stop_luma
  printf 'port=%q\ncaddy_admin=%q\nnetwork=%q\n' "$port" "$caddy_admin" "$network" >"$settings_file"
  start_luma
  print_next_steps
}

cmd_stop() {
  local pid
  stop_luma
  if pid=$(live_pid "$caddy_pid_file" caddy); then
    stop_process "$pid" Caddy 15
  elif caddy_responds; then
    say "leaving the Caddy at ${caddy_admin} running: setup.sh did not start it"
  fi
  rm -f "$caddy_pid_file"
  if ((remove_containers)); then
    remove_replica_containers
  else
    say "stopped; replica containers keep running (docker ps --filter label=dev.luma.service)"
  fi
}

# Removes every container labelled with this data directory's Luma instance id, running or not.
remove_replica_containers() {
  local instance_file="$data_dir/instance-id" instance ids
  [[ -r $instance_file ]] || fail "${instance_file} not found: no Luma instance has used this data directory"
  instance=$(<"$instance_file")
  mapfile -t ids < <(docker ps -aq --filter "label=dev.luma.instance=${instance}")
  if ((${#ids[@]} == 0)); then
    say "stopped; no replica containers of instance ${instance}"
    return
  fi
  docker rm -f "${ids[@]}" >/dev/null
  say "stopped; removed ${#ids[@]} replica containers of instance ${instance}"
}

cmd_status() {
  local pid status=0
  if [[ -r $settings_file ]]; then
    # Written by cmd_start with printf %q, so sourcing it only assigns these three variables.
    # shellcheck source=/dev/null
    source "$settings_file"
  fi

  printf 'data directory: %s\n' "$data_dir"
  if pid=$(live_pid "$luma_pid_file" "$ROOT_DIR/bin/luma"); then
    printf 'luma:           running (pid %s), log %s\n' "$pid" "$luma_log"
    if curl -fsS --max-time 2 -o /dev/null "$(health_url)" 2>/dev/null; then
      printf 'health:         %s responds\n' "$(health_url)"
    else
      printf 'health:         %s does not respond\n' "$(health_url)"
      status=1
    fi
  else
    printf 'luma:           not running\n'
    status=3
  fi

  if pid=$(live_pid "$caddy_pid_file" caddy); then
    printf 'caddy:          running (pid %s, started by setup.sh), admin API %s\n' "$pid" "$caddy_admin"
  elif caddy_responds; then
    printf 'caddy:          admin API responds at %s (not started by setup.sh)\n' "$caddy_admin"
  else
    printf 'caddy:          no admin API responds at %s\n' "$caddy_admin"
  fi

  if docker network inspect "$network" >/dev/null 2>&1; then
    printf 'network:        %s\n' "$network"
  else
    printf 'network:        %s missing\n' "$network"
  fi
  return "$status"
}

cmd_logs() {
  local file=$luma_log
  [[ $log_name == caddy ]] && file=$caddy_log
  [[ -f $file ]] || fail "${file} not found: has ./setup.sh run with this data directory?"
  if ((follow)); then
    exec tail -n "$log_lines" -F "$file"
  fi
  tail -n "$log_lines" "$file"
}

admin_curl_args >/dev/null # fails on a -caddy-admin value that is neither a URL nor a socket path

case "$command_name" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  logs) cmd_logs ;;
esac
