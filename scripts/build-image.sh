#!/usr/bin/env bash
# Builds a Docker image for a Node.js app without a registry or a base image.
#
# Usage: scripts/build-image.sh <tag> <app-dir>
#
# The image contains the host's `node` binary, the shared libraries `ldd` lists for it (with the
# dynamic loader), minimal /etc/passwd and /etc/group, a world-writable /tmp, and <app-dir>
# copied to /app. It runs `node /app/server.js` as user nobody (65534) with PORT=8080.
#
# The image carries the label dev.luma.build-hash, a hash of this script, the node binary and
# libraries (path, size, mtime) and every file of <app-dir> (path and content). When <tag>
# already has that label value the script exits without building. Concurrent runs for the
# same tag wait for each other (flock), so parallel test setups build once.
#
# Requires: bash, docker CLI, ldd, tar (GNU), sha256sum, flock. Tested on Debian 12 as root.
set -euo pipefail

usage() {
  echo "usage: $0 <tag> <app-dir>" >&2
  echo "builds <tag> from the host's node binary and <app-dir> (must contain server.js)" >&2
  exit 2
}

[[ $# -eq 2 ]] || usage
tag=$1
app_dir=$2

if [[ ! -f "$app_dir/server.js" ]]; then
  echo "build-image: $app_dir/server.js not found; <app-dir> must contain server.js" >&2
  exit 2
fi
app_dir=$(cd "$app_dir" && pwd -P)

node_bin=$(command -v node || true)
if [[ -z "$node_bin" ]]; then
  echo "build-image: node not found in PATH; install Node.js 20 or put it in PATH" >&2
  exit 1
fi
node_bin=$(readlink -f "$node_bin")

# ldd exits non-zero for a static binary, which then needs no libraries.
ldd_output=$(ldd "$node_bin" 2>&1 || true)
if grep -q 'not found' <<<"$ldd_output"; then
  echo "build-image: $node_bin needs libraries that are missing on this host:" >&2
  grep 'not found' <<<"$ldd_output" >&2
  exit 1
fi

# ldd prints "name => /path (addr)" for libraries and "/path (addr)" for the loader.
# linux-vdso has no file and is skipped.
mapfile -t libraries < <(awk '
  $2 == "=>" && $3 ~ /^\// { print $3; next }
  $1 ~ /^\// { print $1 }
' <<<"$ldd_output")

script_path=$(readlink -f "${BASH_SOURCE[0]}")
build_hash=$(
  {
    sha256sum "$script_path" | cut -d' ' -f1
    for file in "$node_bin" ${libraries[@]+"${libraries[@]}"}; do
      stat -L -c '%n %s %Y' "$file"
    done
    (cd "$app_dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
  } | sha256sum | cut -c1-32
)

# One build per tag at a time; the lock file name is the tag with unsafe characters replaced.
lock_file="${TMPDIR:-/tmp}/luma-build-image-${tag//[^A-Za-z0-9._-]/_}.lock"
exec 9>"$lock_file"
flock 9

current_hash=$(docker image inspect --format '{{ index .Config.Labels "dev.luma.build-hash" }}' "$tag" 2>/dev/null || true)
if [[ "$current_hash" == "$build_hash" ]]; then
  echo "build-image: $tag is up to date (build hash $build_hash)"
  exit 0
fi

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/luma-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT

mkdir -p "$rootfs"/{usr/local/bin,etc,tmp,app,proc,sys,dev}
chmod 1777 "$rootfs/tmp"
cp -L "$node_bin" "$rootfs/usr/local/bin/node"

# Each library goes to the path ldd printed, dereferenced, so the loader path baked into the
# binary (/lib64/ld-linux-x86-64.so.2 on x86_64) exists whatever the host's /lib layout is.
for library in ${libraries[@]+"${libraries[@]}"}; do
  mkdir -p "$rootfs$(dirname "$library")"
  cp -L "$library" "$rootfs$library"
done

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF

cp -R "$app_dir/." "$rootfs/app/"
chmod -R a+rX "$rootfs/app"

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -c . |
  docker import \
    --change 'CMD ["node", "/app/server.js"]' \
    --change 'WORKDIR /app' \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'ENV PORT=8080' \
    --change 'EXPOSE 8080' \
    --change 'USER 65534:65534' \
    --change "LABEL dev.luma.build-hash=$build_hash" \
    --message "built by scripts/build-image.sh from $app_dir" \
    - "$tag" >/dev/null

# Earlier builds that lost their tag are removed once no container uses them. The label
# filter limits this to images built by this script.
docker image prune --force --filter label=dev.luma.build-hash >/dev/null 2>&1 || true

echo "build-image: built $tag (build hash $build_hash)"
