#!/bin/sh
# Builds rustcd's container image from this checkout:
#   deploy/container/build.sh [IMAGE]        (default IMAGE: rustcd:latest)
# PROFILE=debug uses the debug build instead of building a release one; ENGINE=docker uses
# docker instead of podman. Nothing is pulled: the image is FROM scratch with the binaries
# (stripped) and the dynamic libraries `ldd` names, staged here.
set -eu
IMAGE=${1:-rustcd:latest}
PROFILE=${PROFILE:-release}
ENGINE=${ENGINE:-podman}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ "$PROFILE" = release ]; then
  (cd "$ROOT" && cargo build --release --bins)
fi
BIN="$ROOT/target/$PROFILE"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
FS="$STAGE/rootfs"
mkdir -p "$FS/usr/local/bin" "$FS/etc" "$FS/var/lib/etcd" "$FS/tmp"
for b in etcd etcdctl etcdutl; do
  strip --strip-all -o "$FS/usr/local/bin/$b" "$BIN/$b"
done
# The loader and the libraries the binaries link, at the paths they are linked with.
LIBS=$(for b in etcd etcdctl etcdutl; do ldd "$BIN/$b"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
for lib in $LIBS; do
  mkdir -p "$FS$(dirname "$lib")"
  cp -L "$lib" "$FS$lib"
done
# The user the server runs as, and name resolution from /etc/hosts, then DNS.
printf 'root:x:0:0:root:/:/nonexistent\netcd:x:10001:10001:etcd:/var/lib/etcd:/nonexistent\n' > "$FS/etc/passwd"
printf 'root:x:0:\netcd:x:10001:\n' > "$FS/etc/group"
printf 'hosts: files dns\n' > "$FS/etc/nsswitch.conf"
chmod 1777 "$FS/tmp"
chown -R 10001:10001 "$FS/var/lib/etcd" 2>/dev/null || true
chmod 0700 "$FS/var/lib/etcd"
cp "$HERE/Containerfile" "$STAGE/Containerfile"
"$ENGINE" build -t "$IMAGE" -f "$STAGE/Containerfile" "$STAGE"
