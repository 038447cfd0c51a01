#!/usr/bin/env bash
# Build (or restore) a Debian trixie chroot holding GIMP 3.0 for the end-to-end tests of the GIMP plug-in.
#
# Usage (root): tests/hosts/setup_gimp.sh [ROOT]
#   ROOT defaults to $STYLELAYER_GIMP_ROOT, else <repo>/.cache/gimp-root (.cache/ is git-ignored).
#
# Idempotent:
#   1. ROOT already has gimp-console-3.0            -> nothing to do.
#   2. ROOT.tar.zst exists next to ROOT             -> unpack it (a few seconds).
#   3. otherwise debootstrap trixie (minbase), apt-get install --no-install-recommends gimp, then cache
#      the tree as ROOT.tar.zst for the next run.
# Bookworm's own GIMP is 2.10 without Python, and trixie's GIMP would upgrade the host's libc: hence a chroot.
# The Debian mirror is read from this machine's apt sources (or $STYLELAYER_DEBIAN_MIRROR); none is hard-coded.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
ROOT="${1:-${STYLELAYER_GIMP_ROOT:-$repo/.cache/gimp-root}}"
ROOT="$(realpath -m "$ROOT")"
TARBALL="$ROOT.tar.zst"
GIMP_BIN=usr/bin/gimp-console-3.0

log() { echo "setup_gimp: $*" >&2; }

if [ -x "$ROOT/$GIMP_BIN" ]; then
    log "$ROOT already has $GIMP_BIN; nothing to do"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    log "must run as root (debootstrap and chroot need it)"
    exit 1
fi

if [ -f "$TARBALL" ]; then
    log "unpacking cached $TARBALL"
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    tar -C "$ROOT" -I 'zstd -T0 -d' -xpf "$TARBALL"
    if [ -x "$ROOT/$GIMP_BIN" ]; then
        log "ready: $ROOT"
        exit 0
    fi
    log "cached tarball lacks $GIMP_BIN; rebuilding"
    rm -rf "$ROOT" "$TARBALL"
fi

# The main Debian archive URI from this machine's apt sources: one-line (sources.list) and deb822 (.sources).
find_mirror() {
    if [ -n "${STYLELAYER_DEBIAN_MIRROR:-}" ]; then
        echo "$STYLELAYER_DEBIAN_MIRROR"
        return
    fi
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        case "$f" in
            *.sources)
                awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f" ;;
            *)
                awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ } print $i }' "$f" ;;
        esac
    done | grep -E '^(https?|file)://' | grep -E '/debian/?$' | grep -v -- '-security' | head -n 1
}

mirror="$(find_mirror || true)"
if [ -z "$mirror" ]; then
    log "no Debian mirror found in /etc/apt/sources.list*; set STYLELAYER_DEBIAN_MIRROR"
    exit 1
fi

if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
if ! command -v zstd >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zstd >/dev/null
fi

partial="$ROOT.partial"
cleanup() {
    if mountpoint -q "$partial/proc" 2>/dev/null; then umount "$partial/proc" || umount -l "$partial/proc"; fi
}
trap cleanup EXIT

rm -rf "$partial"
mkdir -p "$(dirname "$ROOT")"
start=$SECONDS
log "debootstrap trixie (minbase) into $partial"
debootstrap --variant=minbase trixie "$partial" "$mirror" >"$partial.log" 2>&1 || {
    tail -n 30 "$partial.log" >&2
    exit 1
}
mount -t proc proc "$partial/proc"
cp /etc/resolv.conf "$partial/etc/resolv.conf"
log "installing gimp in the chroot"
chroot "$partial" apt-get update -qq
chroot "$partial" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gimp \
    >>"$partial.log" 2>&1 || {
    tail -n 30 "$partial.log" >&2
    exit 1
}
chroot "$partial" apt-get clean
umount "$partial/proc"
if [ ! -x "$partial/$GIMP_BIN" ]; then
    log "gimp installed but $GIMP_BIN is missing"
    exit 1
fi
rm -f "$partial.log"
mv "$partial" "$ROOT"
log "built in $((SECONDS - start)) s; caching as $TARBALL"
tar -C "$ROOT" -I 'zstd -T0 -3' -cpf "$TARBALL.tmp" .
mv "$TARBALL.tmp" "$TARBALL"
log "ready: $ROOT ($((SECONDS - start)) s)"
