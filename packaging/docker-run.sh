#!/bin/bash
# Run a Docker container that sees its own limits in /proc and
# /sys/devices/system/cpu, served by the proclens daemon (proclens.service).
#
#   packaging/docker-run.sh [docker-run-options...] IMAGE [COMMAND...]
#   packaging/docker-run.sh            # demo: 256 MiB, 0.5 CPU, cpuset 0
#
# Only the -v flags matter; copy them into your own docker run / compose file.
# They are bind mounts taken when the container starts: if proclens is
# restarted, containers started before keep the old, dead mount (reads fail
# with ENOTCONN) until they are restarted too.
set -euo pipefail

PROCLENS_DIR=${PROCLENS_DIR:-/var/lib/proclens}

# Refuse without a live mount: docker creates a directory for a missing -v
# source (runc then cannot mount it over a /proc file), and a dead mount
# would give the container ENOTCONN.
if ! head -c1 "$PROCLENS_DIR/proc/meminfo" >/dev/null 2>&1; then
    echo "proclens is not serving $PROCLENS_DIR (systemctl start proclens)" >&2
    exit 1
fi

mounts=(
    # runc allows bind mounts over exactly these /proc files (its lxcfs
    # whitelist); :ro because the daemon serves them read-only anyway.
    -v "$PROCLENS_DIR/proc/meminfo:/proc/meminfo:ro"
    -v "$PROCLENS_DIR/proc/cpuinfo:/proc/cpuinfo:ro"
    -v "$PROCLENS_DIR/proc/stat:/proc/stat:ro"
    -v "$PROCLENS_DIR/proc/loadavg:/proc/loadavg:ro"
    -v "$PROCLENS_DIR/proc/uptime:/proc/uptime:ro"
    -v "$PROCLENS_DIR/proc/diskstats:/proc/diskstats:ro"
    -v "$PROCLENS_DIR/proc/swaps:/proc/swaps:ro"
    # The whole directory, so online/possible/present and the cpuN entries
    # agree (glibc reads online, htop/lscpu count cpuN directories).
    -v "$PROCLENS_DIR/sys/devices/system/cpu:/sys/devices/system/cpu:ro"
    # iostat reads /sys/block/<disk>/stat, not /proc/diskstats.
    -v "$PROCLENS_DIR/sys/block:/sys/block:ro"
)

if [ $# -eq 0 ]; then
    # Demo. getconf _NPROCESSORS_ONLN reads .../cpu/online; nproc would
    # show the cpuset via sched_getaffinity(2) with or without proclens.
    set -- --memory 256m --cpus 0.5 --cpuset-cpus 0 \
        debian:bookworm-slim \
        sh -c 'head -n3 /proc/meminfo; grep -c ^processor /proc/cpuinfo;
               getconf _NPROCESSORS_ONLN; cat /proc/uptime'
fi

exec docker run --rm "${mounts[@]}" "$@"
