#!/bin/sh
# responses-api-proxy as installed from npm: runs the prebuilt binary for this platform, which npm
# installed as an optional dependency (responses-api-proxy-<os>-<arch>[-musl]).
#
# This file must stay a shell script that ends in `exec`: exec replaces the shell with the proxy,
# so no process stands between the key on stdin and the binary, and nothing here reads stdin.
set -eu

# Follow the symlinks npm made (…/bin/responses-api-proxy -> …/responses-api-proxy/bin/…) to this
# package's folder. readlink without -f: macOS before 12.3 has no -f.
self=$0
while [ -L "$self" ]; do
  link=$(readlink "$self")
  case $link in
    /*) self=$link ;;
    *) self=$(dirname "$self")/$link ;;
  esac
done
package=$(cd "$(dirname "$self")/.." && pwd -P)

case $(uname -s) in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) echo "responses-api-proxy: npm has no build for $(uname -s); download a release binary" >&2; exit 1 ;;
esac
case $(uname -m) in
  x86_64 | amd64) arch=x64 glibc_loader=/lib64/ld-linux-x86-64.so.2 musl_loader=/lib/ld-musl-x86_64.so.1 ;;
  aarch64 | arm64) arch=arm64 glibc_loader=/lib/ld-linux-aarch64.so.1 musl_loader=/lib/ld-musl-aarch64.so.1 ;;
  *) echo "responses-api-proxy: npm has no build for $(uname -m); download a release binary" >&2; exit 1 ;;
esac
# The musl build where the C library is musl only (Alpine), as npm's "libc" field chooses it.
libc=
if [ "$os" = linux ] && [ ! -e "$glibc_loader" ] && [ -e "$musl_loader" ]; then libc=-musl; fi

name=responses-api-proxy-$os-$arch$libc
# Nested under this package (a global install), or beside it (hoisted, or installed on its own).
for dir in "$package/node_modules/$name" "$package/../$name"; do
  if [ -x "$dir/bin/responses-api-proxy" ]; then exec "$dir/bin/responses-api-proxy" "$@"; fi
done
echo "responses-api-proxy: the package $name is not installed; install again without --omit=optional (or --no-optional), or use a release binary" >&2
exit 1
