#!/usr/bin/env bash
# Installs and starts what Luma needs on a Debian or Ubuntu host: the Docker engine (docker.io),
# Caddy, and the Node dependencies. setup.sh and `npm test` (its pretest script) both call this
# script, so a deployment and a test run start from the same state.
#
# Idempotent: it installs only what is missing, never reinstalls a package, starts dockerd only
# when no engine responds to `docker info`, and runs `npm ci` only when node_modules is missing or
# older than package-lock.json. It must not need any npm package, because `npm test` runs it
# before node_modules exists.
#
# Debian's caddy package: on a host where systemd runs, installing it enables and starts
# caddy.service, which serves /etc/caddy/Caddyfile (a welcome page on port 80) with the admin API
# on 127.0.0.1:2019. Luma can use that Caddy, because the controller only adds its own server
# (the -port listener) through the admin API and leaves other servers alone. setup.sh finds the
# admin API responding and does not start a second Caddy. Two caveats: `systemctl reload caddy`
# or a restart loads the Caddyfile again and drops Luma's server until the controller writes it
# back, and port 80 stays with the welcome page. Run `systemctl disable --now caddy` to let
# setup.sh start its own Caddy instead. Without systemd, as on this kind of machine and in CI,
# the package starts nothing.
set -euo pipefail

readonly MIN_NODE_MAJOR=20 # engines.node in package.json is ">=20.10"
readonly MIN_NODE_MINOR=10
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT_DIR
# Where dockerd writes its output when this script starts it (no systemd).
readonly DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
# Seconds to wait for a starting engine to respond to `docker info`.
readonly DOCKER_START_TIMEOUT="${DOCKER_START_TIMEOUT:-30}"

usage() {
  cat <<'EOF'
Usage: bash scripts/install-deps.sh [options]

Installs what is missing for Luma (Debian/Ubuntu: docker.io, caddy, curl), starts the Docker
engine when none responds, and runs `npm ci` when node_modules is missing or stale.

Options:
  --test        prepare for `npm test`: the test suite does not need curl
  --no-npm      skip `npm ci`
  --no-start    do not start dockerd; fail when no engine responds
  --dry-run     print what would be installed or started, change nothing
  -h, --help    print this help

Environment:
  DOCKERD_LOG            output file of a dockerd started here (default /var/log/dockerd.log)
  DOCKER_START_TIMEOUT   seconds to wait for the engine to respond (default 30)
EOF
}

mode="setup"
dry_run=0
install_npm=1
start_docker=1

while (($# > 0)); do
  case "$1" in
    --test) mode="test" ;;
    --no-npm) install_npm=0 ;;
    --no-start) start_docker=0 ;;
    --dry-run) dry_run=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      printf 'install-deps: unknown option %s (see --help)\n' "$1" >&2
      exit 2
      ;;
  esac
  shift
done

log() { printf 'install-deps: %s\n' "$*"; }
fail() {
  printf 'install-deps: error: %s\n' "$*" >&2
  exit 1
}

# Runs a command that changes the host, or only prints it under --dry-run.
run() {
  if ((dry_run)); then
    log "dry run, would run: $*"
    return 0
  fi
  "$@"
}

# Prints the path of an executable file on PATH or in the sbin folders, which a non-root PATH on
# Debian leaves out. Unlike `command -v`, skips a file of that name without execute permission.
find_command() {
  local name=$1 dir
  local -a dirs
  IFS=: read -r -a dirs <<<"$PATH"
  for dir in "${dirs[@]}" /usr/local/sbin /usr/sbin /sbin; do
    if [[ -n $dir && -f "$dir/$name" && -x "$dir/$name" ]]; then
      printf '%s\n' "$dir/$name"
      return 0
    fi
  done
  return 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }
systemd_running() { [[ -d /run/systemd/system ]]; }

# --- Node.js: not installed here, because Debian 12's nodejs package (18.x) is too old ---------

check_node() {
  local version major minor
  if ! find_command node >/dev/null || ! find_command npm >/dev/null; then
    fail "node and npm not found: install Node.js ${MIN_NODE_MAJOR}.${MIN_NODE_MINOR} or later (https://nodejs.org/en/download), then run this script again"
  fi

  version=$(node -p 'process.versions.node')
  IFS=. read -r major minor _ <<<"$version"
  if ((major < MIN_NODE_MAJOR || (major == MIN_NODE_MAJOR && minor < MIN_NODE_MINOR))); then
    fail "node ${version} is too old: Luma needs ${MIN_NODE_MAJOR}.${MIN_NODE_MINOR} or later"
  fi
  log "found node ${version}, npm $(npm --version)"
}

# --- Debian packages ----------------------------------------------------------------------------

missing_packages=()
missing_commands=()

require_command() {
  local name=$1 package=$2 listed
  if find_command "$name" >/dev/null; then
    return 0
  fi

  missing_commands+=("$name")
  for listed in "${missing_packages[@]+"${missing_packages[@]}"}"; do
    [[ $listed == "$package" ]] && return 0
  done
  missing_packages+=("$package")
}

install_packages() {
  # dockerd runs the engine. docker-init is the init process that Luma's containers run under
  # (HostConfig.Init).
  require_command dockerd docker.io
  require_command docker-init docker.io
  require_command docker docker.io
  require_command caddy caddy
  if [[ $mode == setup ]]; then
    require_command curl curl
  fi

  if ((${#missing_packages[@]} == 0)); then
    log "found dockerd, docker, caddy$([[ $mode == setup ]] && printf ', curl')"
    return 0
  fi

  if ! find_command apt-get >/dev/null; then
    fail "missing commands: ${missing_commands[*]}; this script installs them only on Debian or Ubuntu (apt-get), so install the Docker engine and Caddy 2.6 or later with your package manager"
  fi
  if ! is_root; then
    printf 'install-deps: error: missing commands: %s\n' "${missing_commands[*]}" >&2
    printf 'install-deps: install them as root, then run this script again:\n' >&2
    printf '  sudo apt-get update && sudo apt-get install -y %s\n' "${missing_packages[*]}" >&2
    exit 1
  fi

  log "installing ${missing_packages[*]} (missing: ${missing_commands[*]})"
  # DPkg::Lock::Timeout waits for another apt run to finish instead of failing at once.
  export DEBIAN_FRONTEND=noninteractive
  run apt-get -o DPkg::Lock::Timeout=300 update -qq
  run apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing_packages[@]}"
  if ((dry_run)); then
    return 0
  fi

  local name
  for name in "${missing_commands[@]}"; do
    find_command "$name" >/dev/null || fail "${name} is still missing after installing ${missing_packages[*]}"
  done
}

# Explains a running caddy.service, which the Debian package starts on hosts with systemd.
note_caddy_service() {
  if systemd_running && systemctl is-active --quiet caddy 2>/dev/null; then
    log "note: caddy.service is running (Debian's default: /etc/caddy/Caddyfile on port 80, admin API on 127.0.0.1:2019)"
    log "note: Luma adds its own server to that Caddy; run 'systemctl disable --now caddy' to let setup.sh start its own"
  fi
}

# --- Docker engine ------------------------------------------------------------------------------

docker_info_output=""

# Succeeds when the engine responds; the version or the error text is left in docker_info_output.
docker_responds() {
  local output status=0
  output=$(timeout 10 docker info --format '{{.ServerVersion}}' 2>&1) || status=$?
  # The client can print warnings (an unreadable config file) before the line that matters.
  docker_info_output=$(printf '%s\n' "$output" | sed '/^[[:space:]]*$/d' | tail -n 1)
  return "$status"
}

# True when DOCKER_HOST is unset or names the default local socket, the one dockerd listens on
# when started without -H.
uses_default_socket() {
  case "${DOCKER_HOST:-}" in
    "" | unix:///var/run/docker.sock | unix:///run/docker.sock) return 0 ;;
    *) return 1 ;;
  esac
}

print_log_tail() {
  if [[ -f $DOCKERD_LOG ]]; then
    printf 'install-deps: last lines of %s:\n' "$DOCKERD_LOG" >&2
    tail -n 20 "$DOCKERD_LOG" >&2
  fi
}

# Polls `docker info` until it responds. When a pid is given and that process exits, stops early.
wait_for_docker() {
  local pid=${1:-} deadline=$((SECONDS + DOCKER_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if docker_responds; then
      log "docker engine ${docker_info_output} is running"
      return 0
    fi
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      print_log_tail
      fail "dockerd (pid ${pid}) exited during start-up"
    fi
    sleep 0.5
  done

  print_log_tail
  if [[ -n $pid ]]; then
    # Left running: a slow engine may still finish starting, and killing it mid-start can leave
    # its state behind in /var/lib/docker.
    fail "docker engine not responding after ${DOCKER_START_TIMEOUT}s, dockerd (pid ${pid}) still running: ${docker_info_output}"
  fi
  fail "docker engine not responding after ${DOCKER_START_TIMEOUT}s: ${docker_info_output}"
}

# Returns the pid of a dockerd process that is already running, from its pid file.
running_dockerd_pid() {
  local pid file
  for file in /var/run/docker.pid /run/docker.pid; do
    [[ -r $file ]] || continue
    pid=$(<"$file")
    if [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/${pid}/comm" 2>/dev/null) == dockerd ]]; then
      printf '%s\n' "$pid"
      return 0
    fi
  done
  return 1
}

start_docker_engine() {
  if docker_responds; then
    log "docker engine ${docker_info_output} is running"
    return 0
  fi
  if [[ $docker_info_output == *"permission denied"* ]]; then
    fail "no access to the Docker socket: ${docker_info_output}; add your user to the docker group ('sudo usermod -aG docker \$USER', then log in again) or run as root"
  fi
  if ((start_docker == 0)); then
    fail "docker engine not responding: ${docker_info_output}"
  fi
  if ! uses_default_socket; then
    fail "no Docker engine responds at DOCKER_HOST=${DOCKER_HOST}: ${docker_info_output}; start that engine, or unset DOCKER_HOST to use the local one"
  fi
  if ! is_root; then
    fail "docker engine not responding: ${docker_info_output}; start it as root with 'sudo systemctl start docker', or 'sudo dockerd' on a host without systemd, then run this script again"
  fi

  local pid dockerd_bin
  if systemd_running; then
    log "starting docker.service with systemctl"
    run systemctl start docker
    ((dry_run)) || wait_for_docker
    return 0
  fi

  if pid=$(running_dockerd_pid); then
    log "dockerd (pid ${pid}) is running but not responding yet, waiting up to ${DOCKER_START_TIMEOUT}s"
    ((dry_run)) || wait_for_docker "$pid"
    return 0
  fi

  # No systemd: start dockerd as a daemon of its own. setsid gives it a new session, so it keeps
  # running after this shell, npm or the CI job that started it ends.
  dockerd_bin=$(find_command dockerd) || fail "dockerd not found"
  if ((dry_run)); then
    log "dry run, would start: ${dockerd_bin} >>${DOCKERD_LOG} 2>&1 (in a new session)"
    return 0
  fi
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  log "starting ${dockerd_bin} in the background, output in ${DOCKERD_LOG}"
  (cd / && exec setsid nohup "$dockerd_bin" >>"$DOCKERD_LOG" 2>&1 </dev/null) &
  pid=$!
  wait_for_docker "$pid"
}

# --- Node dependencies --------------------------------------------------------------------------

# npm writes node_modules/.package-lock.json at the end of every install, so it is the marker of
# a complete install. The folder's own mtime is not: npm can leave it older than the lock file.
install_node_modules() {
  local lock="$ROOT_DIR/package-lock.json" marker="$ROOT_DIR/node_modules/.package-lock.json"
  [[ -f $lock ]] || fail "${lock} not found: npm ci needs the lock file"

  if [[ -f $marker && ! $lock -nt $marker ]]; then
    log "node_modules is up to date with package-lock.json"
    return 0
  fi

  if [[ -f $marker ]]; then
    log "package-lock.json is newer than node_modules, running npm ci"
  else
    log "node_modules is missing, running npm ci"
  fi
  # npm 11 skips the install scripts of some packages (esbuild's postinstall among them) unless
  # they are allowed; nothing Luma runs needs those scripts.
  # No dependency needs its install script: esbuild's only checks its platform binary, and
  # cpu-features is an optional speed-up of ssh2, which Luma does not use. Skipping them also
  # avoids npm 11's warning about install scripts it did not run.
  (cd "$ROOT_DIR" && run npm ci --no-audit --no-fund --ignore-scripts)
}

check_node
install_packages
note_caddy_service
start_docker_engine
if ((install_npm)); then
  install_node_modules
fi
log "done"
