#!/usr/bin/env bash
# Builds the local images that stand in for Docker Hub's on a network that cannot reach it:
#   netreduce-base:bookworm      Debian bookworm minbase + python3 (3.11), venv, pip, and this
#                                machine's CA bundle (the only one TLS to the registries verifies with)
#   netreduce-redis:bookworm     Debian's redis-server on it
#   netreduce-postgres:bookworm  Debian's postgresql on it, configured like the official image
#                                (POSTGRES_USER/PASSWORD/DB, data in /var/lib/postgresql/data)
# docker-compose.override-local.yml names them. An image that exists is kept; the mmdebstrap tarball
# is cached in $NETREDUCE_IMAGE_CACHE (default /var/cache/netreduce-compose), so a rerun is instant.
# NETREDUCE_REBUILD_BASE=1 rebuilds all three.
set -euo pipefail
cd "$(dirname "$0")"
CACHE=${NETREDUCE_IMAGE_CACHE:-/var/cache/netreduce-compose}
CA_BUNDLE=${NETREDUCE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
TAR="$CACHE/bookworm-minbase.tar"
rebuild=${NETREDUCE_REBUILD_BASE:-0}

have() { [ "$rebuild" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }
step() { echo "build-base-images: $*" >&2; }

if ! have netreduce-base:bookworm; then
  if [ ! -s "$TAR" ] || [ "$rebuild" = 1 ]; then
    command -v mmdebstrap >/dev/null || { step "installing mmdebstrap"; apt-get install -y -q mmdebstrap >&2; }
    mkdir -p "$CACHE"
    step "mmdebstrap bookworm minbase -> $TAR"
    mmdebstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$CACHE/bookworm-minbase.part.tar" >&2
    mv "$CACHE/bookworm-minbase.part.tar" "$TAR"
  fi
  docker import "$TAR" netreduce-minbase:bookworm >/dev/null
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp images/base.Dockerfile "$ctx/Dockerfile"
  cp "$CA_BUNDLE" "$ctx/ca-certificates.crt"
  step "netreduce-base:bookworm (CA bundle from $CA_BUNDLE)"
  docker build -q -t netreduce-base:bookworm "$ctx" >/dev/null
fi
for svc in redis postgres; do
  if ! have "netreduce-$svc:bookworm"; then
    step "netreduce-$svc:bookworm"
    docker build -q --network host -t "netreduce-$svc:bookworm" -f "images/$svc.Dockerfile" images >/dev/null
  fi
done
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^netreduce-(base|redis|postgres):' >&2
