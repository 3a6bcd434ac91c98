#!/bin/bash
# Run a Docker container that sees its own limits in /proc and
# /sys/devices/system/cpu, served by the proclens daemon (proclens.service).
#
#   packaging/docker-run.sh [docker-run-options...] IMAGE [COMMAND...]
#   packaging/docker-run.sh            # demo: 256 MiB, 0.5 CPU, cpuset 0
#
# Only the -v flags matter: `proclens docker-args` prints them, for your own
# docker run or compose file. (Registering proclens-runc as a runtime in
# /etc/docker/daemon.json does the same without flags: see the README.) If
# proclens crashes or is restarted, the next daemon re-points these mounts in
# running containers; reads fail with ENOTCONN only in between.
set -euo pipefail

PROCLENS_DIR=${PROCLENS_DIR:-/var/lib/proclens}

# Refuse without a live mount: docker creates a directory for a missing -v
# source (runc then cannot mount it over a /proc file), and a dead mount
# would give the container ENOTCONN.
if ! head -c1 "$PROCLENS_DIR/proc/meminfo" >/dev/null 2>&1; then
    echo "proclens is not serving $PROCLENS_DIR (systemctl start proclens)" >&2
    exit 1
fi

# docker-args prints shell words (quoted when a path needs it).
eval "mounts=($(proclens docker-args --mountpoint "$PROCLENS_DIR"))"

if [ $# -eq 0 ]; then
    # Demo. getconf _NPROCESSORS_ONLN reads .../cpu/online; nproc would
    # show the cpuset via sched_getaffinity(2) with or without proclens.
    set -- --memory 256m --cpus 0.5 --cpuset-cpus 0 \
        debian:bookworm-slim \
        sh -c 'head -n3 /proc/meminfo; grep -c ^processor /proc/cpuinfo;
               getconf _NPROCESSORS_ONLN; cat /proc/uptime'
fi

exec docker run --rm "${mounts[@]}" "$@"
