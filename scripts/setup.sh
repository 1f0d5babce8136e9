#!/usr/bin/env bash
# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
#
# One-command set-up of host_profiler on Debian 12, as root. Idempotent and fast when done:
#   1. Debian packages: BCC (python3-bpfcc, bpfcc-tools), kernel headers, compilers and tools.
#   2. Kernel headers for BCC: when /lib/modules/$(uname -r)/build is missing or broken (custom kernels),
#      link it (and .../source) to the newest installed generic Debian headers.
#   3. A virtual environment at $REPO/.venv made with Debian's /usr/bin/python3 (BCC's module is built
#      for it), with Debian's `bcc` module linked in, and this package installed with its dev extra.
#
# Environment: HOST_PROFILER_VENV (default $REPO/.venv), HOST_PROFILER_SKIP_APT=1 to skip apt-get,
# HOST_PROFILER_FORCE_PIP=1 to reinstall the package even if nothing changed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HOST_PROFILER_VENV:-$REPO/.venv}"
PY=/usr/bin/python3            # Debian's interpreter; NOT the pyenv python3 that may come first on PATH
BCC_SRC=/usr/lib/python3/dist-packages/bcc
KREL="$(uname -r)"

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -E bash "$0" "$@"
    fi
    die "run as root (BCC needs root or CAP_BPF+CAP_PERFMON+CAP_SYS_ADMIN, and apt-get needs root)"
fi

# ---------------------------------------------------------------------------------------------
# 1. Debian packages (only the missing ones; apt-get update only when something must be installed)
# ---------------------------------------------------------------------------------------------
# binutils also brings libbfd, whose GNU libiberty demangler names C++ and Rust frames; g++,
# rustc and libc6-dbg (libc's .symtab with versioned names, and its DWARF lines) are for the tests.
PACKAGES=(python3-bpfcc bpfcc-tools linux-headers-amd64 python3-venv python3-dev gcc g++ golang-go
          binutils zstd bpftool linux-perf libc6-dbg)

is_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

if [ "${HOST_PROFILER_SKIP_APT:-0}" != 1 ]; then
    missing=()
    for p in "${PACKAGES[@]}"; do
        is_installed "$p" || missing+=("$p")
    done
    # nodejs may already come from nodesource (a different package set): only install it if `node` is absent.
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    # rustc may come from rustup (~/.cargo/bin): only install Debian's if none is on PATH.
    command -v rustc >/dev/null 2>&1 || missing+=(rustc)
    # the JVM tests build their Java programs (JDK 17+: Debian 12's default is 17)
    command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        log "Debian packages: all present"
    fi
fi

[ -x "$PY" ] || die "$PY not found (install python3)"
[ -d "$BCC_SRC" ] || die "$BCC_SRC not found (apt-get install python3-bpfcc)"

# ---------------------------------------------------------------------------------------------
# 2. Kernel headers for BCC. BCC 0.26 looks at /lib/modules/$KREL/build AND .../source;
#    BCC_KERNEL_SOURCE alone is not enough.
# ---------------------------------------------------------------------------------------------
headers_ok() {  # $1 = directory; usable when it resolves and holds the kernel's include tree
    [ -d "$1" ] && { [ -e "$1/include/generated/autoconf.h" ] || [ -e "$1/include/linux/kconfig.h" ] \
        || [ -e "$1/Makefile" ]; }
}

MODDIR="${HOST_PROFILER_MODULES_ROOT:-/lib/modules}/$KREL"  # the root is overridable for tests only
if headers_ok "$MODDIR/build" && headers_ok "$MODDIR/source"; then
    log "kernel headers: $MODDIR/build -> $(readlink -f "$MODDIR/build")"
else
    if ! headers_ok "$MODDIR/build" && [ "${HOST_PROFILER_SKIP_APT:-0}" != 1 ] \
            && [ "$MODDIR" = "/lib/modules/$KREL" ] && apt-cache show "linux-headers-$KREL" >/dev/null 2>&1; then
        log "installing linux-headers-$KREL (the running kernel's own headers)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "linux-headers-$KREL" >/dev/null || true
    fi
    if ! headers_ok "$MODDIR/build"; then
        newest="$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)"
        if [ -z "$newest" ] && [ "${HOST_PROFILER_SKIP_APT:-0}" != 1 ]; then
            log "installing linux-headers-amd64"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-headers-amd64 >/dev/null
            newest="$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)"
        fi
        [ -n "$newest" ] || die "no /usr/src/linux-headers-*-amd64 directory; apt-get install linux-headers-amd64"
        mkdir -p "$MODDIR"
        rm -rf "$MODDIR/build"
        ln -s "$newest" "$MODDIR/build"
        log "kernel headers: linked $MODDIR/build -> $newest"
        if [ "$(basename "$newest" | sed 's/^linux-headers-//')" != "$KREL" ]; then
            log "note: the running kernel $KREL has no headers package; using $(basename "$newest") instead"
        fi
    fi
    if ! headers_ok "$MODDIR/source"; then
        build_dir="$(readlink -f "$MODDIR/build")"
        common="${build_dir%-amd64}-common"   # Debian splits headers into -amd64 (generated) and -common
        [ -d "$common" ] || common="$build_dir"
        rm -rf "$MODDIR/source"
        ln -s "$common" "$MODDIR/source"
        log "kernel headers: linked $MODDIR/source -> $common"
    fi
fi

# tracefs: BCC's tracepoints need it; mount it when the system did not.
if [ ! -e /sys/kernel/tracing/events ] && [ ! -e /sys/kernel/debug/tracing/events ]; then
    mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null \
        || log "warning: tracefs is not mounted and could not be mounted on /sys/kernel/tracing"
fi

# ---------------------------------------------------------------------------------------------
# 3. Virtual environment with Debian's python3, Debian's bcc module linked in, and the package.
# ---------------------------------------------------------------------------------------------
venv_ok() {
    [ -x "$VENV/bin/python" ] && [ "$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)' 2>/dev/null)" = /usr ] \
        && [ "$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = \
             "$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" ]
}
if ! venv_ok; then
    [ -e "$VENV" ] && { log "recreating $VENV (not made from $PY)"; rm -rf "$VENV"; }
    log "creating $VENV with $PY ($("$PY" -V 2>&1))"
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

# The PyPI project named `bcc` is unrelated to BCC: make sure it is not there, then link Debian's module.
if [ -e "$SITE/bcc" ] && [ ! -L "$SITE/bcc" ]; then
    log "removing a non-Debian bcc package from $SITE"
    "$VPY" -m pip uninstall -y -q bcc >/dev/null 2>&1 || true
    rm -rf "$SITE/bcc"
fi
if [ "$(readlink "$SITE/bcc" 2>/dev/null || true)" != "$BCC_SRC" ]; then
    ln -sfn "$BCC_SRC" "$SITE/bcc"
    log "linked $SITE/bcc -> $BCC_SRC"
fi

# Reinstall only when packaging inputs changed (or the install looks broken).
STAMP="$VENV/.host_profiler-setup"
want="$(cat "$REPO/setup.py" "$REPO/pyproject.toml" 2>/dev/null | sha256sum | cut -d' ' -f1) $REPO"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "${HOST_PROFILER_FORCE_PIP:-0}" = 1 ] || [ "$want" != "$have" ] || [ ! -x "$VENV/bin/host-profiler" ] \
        || ! "$VPY" -c 'import importlib.metadata as m; m.version("datadog-host-profiler")' >/dev/null 2>&1; then
    log "installing the package and its dev dependencies into $VENV (log: $VENV/pip-install.log)"
    if ! (cd "$REPO" && "$VPY" -m pip install --upgrade pip setuptools wheel \
            && "$VPY" -m pip install -e '.[dev]') >"$VENV/pip-install.log" 2>&1; then
        grep -v '^WARNING: Location' "$VENV/pip-install.log" | tail -n 20 >&2
        die "pip install -e '.[dev]' failed (full log: $VENV/pip-install.log)"
    fi
    echo "$want" > "$STAMP"
else
    log "package: already installed in $VENV"
fi

"$VPY" -c 'import bcc' || die "the venv cannot import bcc (check $SITE/bcc -> $BCC_SRC)"

# Smoke test: BCC must compile a BPF program against the headers set up above (about a second).
if ! out="$("$VPY" -c 'from bcc import BPF; BPF(text="int f(void *ctx) { return 0; }")' 2>&1)"; then
    log "warning: BCC cannot compile a BPF program; see README 'Troubleshooting'. Last lines:"
    printf '%s\n' "$out" | tail -n 5 >&2
else
    log "BCC compiles BPF programs: ok"
fi
log "done: $VENV (python $("$VPY" -c 'import sys; print(sys.version.split()[0])'))"
