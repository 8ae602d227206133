#!/usr/bin/env bash
# Device check on EMULATED arm64: proof that the Raspberry Pi install path works, without a board.
#
#   sudo deploy/device-check.sh                 (make device-check; --help for the options)
#
# On an x86_64 Debian/Ubuntu host, as root: installs the host tools when missing (qemu-user-static,
# binfmt-support, mmdebstrap, debian-archive-keyring), registers qemu-aarch64 with binfmt_misc, builds
# once (cached) an arm64 Debian bookworm rootfs with mmdebstrap, exports four model files on x86 (ONNX
# fp32/int8, TFLite fp32/int8; cached) and runs the x86 reference on a few images. Then, in an overlay
# of the rootfs under qemu-user (QEMU_CPU=cortex-a72, an ARM /proc/cpuinfo bound over the x86 one):
# deploy/install-rpi.sh --pip-opencv with pip's --only-binary=:all: (the venv with .[edge] from aarch64
# wheels, nothing built from source; no systemd runs in a chroot: the installer says what it skipped),
# `edgedet detect` with the four models, `edgedet bench report` with two, and the installed daemon
# (`edgedet camera` as the unit starts it, an image-folder source) for a few seconds.
# deploy/device_check_compare.py compares the detections with x86's: table.txt and summary.json in the
# output folder.
#
# Exit status: 0 every check passed; 1 a check failed or a detection differs; 2 usage;
# 3 arm64 cannot be emulated here or there is nothing to run (the reason is printed: not root, no
# binfmt_misc as in an unprivileged container, not an x86_64 host, no apt-get for the tools, no model
# tooling); 4 setting up failed (package install, rootfs build, x86 export).
set -euo pipefail

readonly EXIT_FAIL=1 EXIT_USAGE=2 EXIT_CANNOT=3 EXIT_SETUP=4
readonly RECIPE=2  # bump when the rootfs recipe changes (it is part of the cache key)
readonly SUITE=bookworm
readonly ROOT_PACKAGES="python3,python3-venv,python3-pip,python3-numpy,ca-certificates,passwd,systemd"
# a static aarch64 ELF that exits with status 42 (mov x0, #42; mov x8, #93; svc #0)
readonly ARM64_PROBE_B64="f0VMRgIBAQAAAAAAAAAAAAIAtwABAAAAeABAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAEAAOAABAAAAAAAAAAEAAAAFAAAAAAAAAAAAAAAAAEAAAAAAAAAAQAAAAAAAhAAAAAAAAACEAAAAAAAAAAAQAAAAAAAAQAWA0qgLgNIBAADU"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${EDGEDET_DEVICE_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgedet/device-check}
OUT=${EDGEDET_DEVICE_CHECK_OUT:-$REPO/outputs/device-check}
SHARED=${EDGEDET_SHARED:-$REPO/../shared}
IMAGES=${DEVICE_CHECK_IMAGES:-3}
PHOTOS=${DEVICE_CHECK_PHOTOS:-2}
CAMERA_FRAMES=${DEVICE_CHECK_CAMERA_FRAMES:-6}
# a Raspberry Pi 4's core. Not qemu's default "max": it has SME, and under qemu 7.2 LiteRT's int8 and
# dynamic-range models then find wrong boxes (int8) or none (dynamic); sme=off or any core without SME is fine
QEMU_CPU=${QEMU_CPU:-cortex-a72}
PIN=${DEVICE_CHECK_PIN:-1}
KEEP=0
REBUILD=0
PREFLIGHT_ONLY=0
INNER=0
if [ -n "${HOST_PYTHON:-}" ]; then
    HOST_PY=$HOST_PYTHON
elif [ -x "$REPO/.venv/bin/python" ]; then
    HOST_PY=$REPO/.venv/bin/python
else
    HOST_PY=python3
fi

usage() {
    cat <<USAGE
Usage: sudo $0 [--cache DIR] [--out DIR] [--images N] [--photos N] [--rebuild-rootfs] [--keep] [--preflight]

Runs the Raspberry Pi install and the edge runtime on emulated arm64 (qemu-user + an arm64 Debian
$SUITE rootfs) and compares the detections with this x86_64 machine's. Needs root and binfmt_misc.

  --cache DIR       rootfs, exported models and pip's cache (default: $CACHE)
  --out DIR         logs, detections, table.txt and summary.json (default: $OUT)
  --images N        frames at the model's input size (strict parity: same pixels in) (default: $IMAGES)
  --photos N        photos as they are (resized on each side: looser parity) (default: $PHOTOS)
  --rebuild-rootfs  build the rootfs again even when a cached one exists
  --keep            keep the run's root layer (CACHE/run) for a look inside afterwards
  --preflight       only install the host tools, register binfmt and run an arm64 probe binary:
                    exit 0 when arm64 can be emulated here, 3 (with the reason) when it cannot
Environment: EDGEDET_DEVICE_CHECK_CACHE, EDGEDET_DEVICE_CHECK_OUT, EDGEDET_SHARED (default ../shared:
the UltraFace weights and photos; without them a quick demo-trained model on generated images),
HOST_PYTHON (x86 edgedet with the convert extra; default .venv/bin/python), QEMU_CPU (cortex-a72),
DEVICE_CHECK_PIN=0 (do not pin numpy/onnxruntime/ai-edge-litert/opencv to the host's versions),
DEVICE_CHECK_IMAGES, DEVICE_CHECK_PHOTOS, DEVICE_CHECK_CAMERA_FRAMES (events to wait for: $CAMERA_FRAMES).
Exit status: 0 ok, 1 a check failed, 2 usage, 3 cannot emulate arm64 here (skip), 4 set-up failed.
USAGE
}

ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
        --cache) [ $# -ge 2 ] || { usage >&2; exit "$EXIT_USAGE"; }; CACHE=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || { usage >&2; exit "$EXIT_USAGE"; }; OUT=$2; shift 2 ;;
        --images) [ $# -ge 2 ] || { usage >&2; exit "$EXIT_USAGE"; }; IMAGES=$2; shift 2 ;;
        --photos) [ $# -ge 2 ] || { usage >&2; exit "$EXIT_USAGE"; }; PHOTOS=$2; shift 2 ;;
        --rebuild-rootfs) REBUILD=1; shift ;;
        --keep) KEEP=1; shift ;;
        --preflight) PREFLIGHT_ONLY=1; shift ;;
        --inner-namespace) INNER=1; shift ;;  # internal: already in the private mount namespace
        -h|--help) usage; exit 0 ;;
        *) usage >&2; printf 'device-check: unknown argument: %s\n' "$1" >&2; exit "$EXIT_USAGE" ;;
    esac
done
case "$IMAGES" in ''|*[!0-9]*|0) printf 'device-check: --images: expected a positive integer\n' >&2; exit "$EXIT_USAGE" ;; esac
case "$PHOTOS" in ''|*[!0-9]*) printf 'device-check: --photos: expected an integer\n' >&2; exit "$EXIT_USAGE" ;; esac
mkdir -p "$CACHE" "$OUT"
CACHE=$(cd "$CACHE" && pwd)
OUT=$(cd "$OUT" && pwd)

say() { printf 'device-check: %s\n' "$*"; }
cannot() { printf 'device-check: cannot run here: %s\n' "$*" >&2; exit "$EXIT_CANNOT"; }
setup_failed() { printf 'device-check: set-up failed: %s\n' "$*" >&2; exit "$EXIT_SETUP"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------------------------------
# pre-flight: root, host tools, binfmt, an arm64 probe

install_host_tools() {
    local missing=()
    command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
    command -v update-binfmts >/dev/null 2>&1 || missing+=(binfmt-support)
    command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || cannot "missing ${missing[*]} and no apt-get to install them"
    say "installing host tools: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >"$OUT/host-tools.log" 2>&1 || setup_failed "apt-get update (see $OUT/host-tools.log)"
    apt-get install -y -qq "${missing[@]}" >>"$OUT/host-tools.log" 2>&1 \
        || setup_failed "apt-get install ${missing[*]} (see $OUT/host-tools.log)"
}

BINFMT_ENTRY=/proc/sys/fs/binfmt_misc/qemu-aarch64
register_binfmt() {
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
            || cannot "binfmt_misc is not mounted and cannot be (an unprivileged container? run on the host," \
                "or with --privileged, or mount it: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)"
    fi
    if [ ! -e "$BINFMT_ENTRY" ]; then
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
    fi
    if [ ! -e "$BINFMT_ENTRY" ]; then  # no binfmt-support entry: register the static qemu by hand (F: opened now)
        printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:'"$(command -v qemu-aarch64-static)"':F' \
            >/proc/sys/fs/binfmt_misc/register 2>/dev/null || true
    fi
    [ -e "$BINFMT_ENTRY" ] || cannot "qemu-aarch64 could not be registered with binfmt_misc (read-only /proc/sys? a container?)"
    if ! grep -qx enabled "$BINFMT_ENTRY"; then
        echo 1 >"$BINFMT_ENTRY" 2>/dev/null || cannot "the qemu-aarch64 binfmt entry is disabled and cannot be enabled"
    fi
}

probe_arm64() {
    local probe rc=0
    probe=$(mktemp)
    printf '%s' "$ARM64_PROBE_B64" | base64 -d >"$probe"
    chmod 0755 "$probe"
    "$probe" 2>/dev/null || rc=$?
    rm -f "$probe"
    [ "$rc" -eq 42 ] || cannot "an arm64 probe binary does not run through binfmt (status $rc; want 42)"
}

preflight() {
    [ "$(uname -s)" = Linux ] || cannot "needs Linux"
    [ "$(uname -m)" = x86_64 ] || cannot "the host is $(uname -m): this check emulates arm64 on x86_64 and compares with it"
    [ "$(id -u)" -eq 0 ] || cannot "needs root (chroot, mounts, binfmt): sudo $0"
    command -v unshare >/dev/null 2>&1 || cannot "needs unshare (util-linux)"
    install_host_tools
    register_binfmt
    probe_arm64
    unshare --mount --propagation private true 2>/dev/null || cannot "cannot make a private mount namespace (unshare --mount)"
    say "arm64 runs here through binfmt: $(tr '\n' ' ' <"$BINFMT_ENTRY" | sed 's/  */ /g')"
}

if [ "$INNER" = 0 ]; then
    preflight
    [ "$PREFLIGHT_ONLY" = 1 ] && exit 0
    # one check at a time per cache (the run's root lives there); the lock passes on through exec
    exec 9>"$CACHE/.lock"
    if ! flock -n 9; then
        say "another device check is using $CACHE: waiting for it"
        flock 9
    fi
    # everything else in a private mount namespace: the chroot's mounts go away with it
    exec unshare --mount --propagation private -- bash "$0" --inner-namespace "${ARGS[@]}"
fi

# ---------------------------------------------------------------------------------------------------
# from here on: inside the private mount namespace

T_START=$(now)
LOGS=$OUT/logs
X86=$OUT/x86
ARM=$OUT/arm64
rm -rf "$LOGS" "$X86" "$ARM" "$OUT/summary.json" "$OUT/table.txt"
mkdir -p "$LOGS" "$X86" "$ARM"
TIMINGS=$OUT/timings.tsv
: >"$TIMINGS"
FAILURES=()
NOTES=$OUT/notes.txt
: >"$NOTES"
STEP_RC=0
RUN=$CACHE/run
ROOT=$RUN/root

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$TIMINGS"; }
note() { printf '%s\n' "$*" >>"$NOTES"; }

# step NAME LOG CMD...: run CMD in a subshell with errexit on (so never call step after || or &&:
# bash would switch errexit off inside), time and record it; STEP_RC is its status. One line out, and
# the log's tail on failure.
step() {
    local name=$1 log=$2 t0 rc secs
    shift 2
    t0=$(now)
    set +e
    ( set -e; "$@" ) >"$log" 2>&1
    rc=$?
    set -e
    STEP_RC=$rc
    secs=$(elapsed "$t0")
    if [ "$rc" -eq 0 ]; then
        record "$name" "$secs" ok
        say "$(printf '%-34s %6ss  ok' "$name" "$secs")"
    else
        record "$name" "$secs" "failed ($rc)"
        say "$(printf '%-34s %6ss  FAILED (status %s): %s' "$name" "$secs" "$rc" "$log")"
        tail -n 15 "$log" | sed 's/^/    | /' >&2
        FAILURES+=("$name")
    fi
}

unmount_under() {  # every mount at or below $1, deepest first; status 1 when one is left
    local dir=$1 mnt
    while IFS= read -r mnt; do
        umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    done < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    ! awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo
}

remove_run() {  # the run's root, only once nothing is mounted in it (bind mounts lead to the host's files)
    [ -d "$RUN" ] || return 0
    if unmount_under "$RUN"; then
        rm -rf --one-file-system "$RUN"
    else
        say "warning: mounts left under $RUN: not removing it"
    fi
}

stop_daemon() {
    local pid
    pid=$(cat "$RUN/daemon.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        sleep 3
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN/daemon.pid"
}

kill_tree() {  # kill_tree PID: the process and its descendants (children first)
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        kill_tree "$child"
    done
    kill -TERM "$1" 2>/dev/null || true
}

ROOTFS_JOB=""
cleanup() {
    if [ -n "$ROOTFS_JOB" ] && kill -0 "$ROOTFS_JOB" 2>/dev/null; then
        say "stopping the rootfs build (an unfinished one is removed next time)"
        kill_tree "$ROOTFS_JOB"
    fi
    stop_daemon
    if [ "$KEEP" = 0 ]; then
        remove_run
    else
        unmount_under "$RUN" || true
        say "kept the run's root layer: $RUN (the mounts are gone with this process)"
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------------
# the arm64 rootfs (cached; built in the background while the models export)

host_apt_options() {  # Acquire options of the host (proxies, snapshot mirrors' validity) for the rootfs' apt
    apt-config dump 2>/dev/null | grep -E '^Acquire::(https?::Proxy|ftp::Proxy|Check-Valid-Until|Check-Date|Retries)' || true
}

host_mirror() {  # the host's Debian mirror URI for $1 (debian or debian-security), or deb.debian.org's
    local want=$1 files=() f uri=""
    [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    if [ "${#files[@]}" -gt 0 ] && grep -qs '^ID=debian' /etc/os-release; then
        uri=$(grep -hE '^[[:space:]]*(deb[[:space:]]|URIs:)' "${files[@]}" | tr ' \t' '\n' \
            | grep -E '^(https?|file)://' | sed 's|/*$||' | grep -E "/${want}\$" | head -n 1 || true)
    fi
    printf '%s' "${uri:-http://deb.debian.org/$want}"
}

build_rootfs() {
    local dir=$1 tmp sources aptopts=() opt
    tmp="$dir.tmp.$$"
    rm -rf --one-file-system "$tmp"
    sources="$CACHE/$SUITE-arm64.sources"
    cat >"$sources" <<SOURCES
Types: deb
URIs: $(host_mirror debian)
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $(host_mirror debian-security)
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    cat "$sources"
    while IFS= read -r opt; do
        [ -n "$opt" ] && aptopts+=("--aptopt=$opt")
    done < <(host_apt_options)
    mmdebstrap --arch=arm64 --variant=apt --include="$ROOT_PACKAGES" "${aptopts[@]}" "$SUITE" "$tmp" "$sources"
    printf 'suite=%s arch=arm64 packages=%s recipe=%s built=%s\n' "$SUITE" "$ROOT_PACKAGES" "$RECIPE" \
        "$(date -u +%FT%TZ)" >"$tmp/.edgedet-device-check"
    mv "$tmp" "$dir"
}

KEY=$(printf '%s %s %s' "$SUITE" "$ROOT_PACKAGES" "$RECIPE" | sha256sum | cut -c1-12)
ROOTFS=$CACHE/rootfs-$SUITE-arm64-$KEY
if [ "$REBUILD" = 1 ] && [ -d "$ROOTFS" ]; then
    rm -rf --one-file-system "$ROOTFS"
fi
for old in "$CACHE"/rootfs-*; do  # another recipe's rootfs, or a build that was cut short: dead weight
    if [ -d "$old" ] && [ "$old" != "$ROOTFS" ]; then
        rm -rf --one-file-system "$old"
    fi
done
if [ -f "$ROOTFS/.edgedet-device-check" ]; then
    say "rootfs: cached $ROOTFS"
    record "rootfs (cached)" 0 ok
else
    rm -rf --one-file-system "$ROOTFS"
    say "rootfs: building $ROOTFS with mmdebstrap in the background (minutes; log: $LOGS/rootfs.log)"
    ( step "rootfs build (mmdebstrap)" "$LOGS/rootfs.log" build_rootfs "$ROOTFS"; exit "$STEP_RC" ) &
    ROOTFS_JOB=$!
fi

# ---------------------------------------------------------------------------------------------------
# the models (x86 export, cached), the check images and the x86 reference

"$HOST_PY" -c 'import numpy, cv2, edgedet' 2>/dev/null \
    || cannot "$HOST_PY has no edgedet with numpy and OpenCV (set HOST_PYTHON, or make install)"
tree_hash() {  # the code that decides what an export writes (not the runtime's: that is what is checked)
    (cd "$REPO" && find convert training edge/core \( -name '*.py' -o -name '*.yaml' \) -print0 | LC_ALL=C sort -z \
        | xargs -0 sha256sum) | sha256sum | cut -c1-12
}
PTH=$SHARED/models/ultraface/version-slim-320.pth
if [ -f "$PTH" ]; then
    MODEL_SOURCE="UltraFace slim 320x240 from $PTH, photos from $SHARED/models/ultraface/images"
    PHOTO_DIR=$SHARED/models/ultraface/images
    MKEY=ultraface-$( (sha256sum "$PTH" | cut -c1-16; tree_hash) | sha256sum | cut -c1-12)
else
    MODEL_SOURCE="no $PTH: a quick demo-trained SSD (edgedet demo --quick) on its generated images"
    PHOTO_DIR=""
    MKEY=demo-$(tree_hash)
fi
MODELS=$CACHE/models/$MKEY
export_models() {
    local tmp=$MODELS.tmp.$$ ckpt calib stem q
    rm -rf "$tmp"
    mkdir -p "$tmp"
    if [ -f "$PTH" ]; then
        "$HOST_PY" -m edgedet.cli import-ultraface "$PTH" --out "$tmp/model.pt"
        ckpt=$tmp/model.pt
        calib=$PHOTO_DIR
    else
        "$HOST_PY" -m edgedet.cli demo --quick --out "$tmp/demo"
        ckpt=$tmp/demo/train_ssd/last.pt
        calib=$tmp/demo/data/JPEGImages
        mkdir -p "$tmp/photos"
        cp "$calib"/* "$tmp/photos/"
    fi
    "$HOST_PY" -m edgedet.cli export --checkpoint "$ckpt" --out "$tmp/export" --formats onnx,tflite --int8 \
        --calib "$calib"
    stem=$(basename "$ckpt" .pt)
    cp "$tmp/export/$stem.onnx" "$tmp/onnx_fp32.onnx"
    cp "$tmp/export/${stem}_int8.onnx" "$tmp/onnx_int8.onnx"
    for q in fp32 int8; do
        cp "$tmp/export/${stem}_$q.tflite" "$tmp/tflite_$q.tflite"
        cp "$tmp/export/${stem}_$q.json" "$tmp/tflite_$q.json"
    done
    cp "$tmp/export/parity.txt" "$tmp/parity.txt" 2>/dev/null || true
    rm -rf "$tmp/export" "$tmp/demo" "$tmp/model.pt"
    rm -rf "$MODELS"
    mv "$tmp" "$MODELS"
}
if [ -f "$MODELS/tflite_int8.tflite" ]; then
    say "models: cached $MODELS"
    record "x86 export (cached)" 0 ok
else
    "$HOST_PY" -c 'import torch, onnx2tf' 2>/dev/null \
        || cannot "no cached models and $HOST_PY cannot export (needs the train and convert extras: make install)"
    for old in "$CACHE"/models/*; do
        [ -d "$old" ] && rm -rf "$old"
    done
    say "models: exporting on x86 ($MODEL_SOURCE)"
    step "x86 export (onnx, tflite, int8)" "$LOGS/export.log" export_models
    [ "$STEP_RC" = 0 ] || setup_failed "export (see $LOGS/export.log)"
fi
[ -n "$PHOTO_DIR" ] || PHOTO_DIR=$MODELS/photos
MODEL_NAMES=(onnx_fp32 onnx_int8 tflite_fp32 tflite_int8)
model_file() { case "$1" in onnx_*) printf '%s.onnx' "$1" ;; *) printf '%s.tflite' "$1" ;; esac; }
THREADS=$(nproc)

# The check images, one folder for detect and the camera (name order = the camera's order):
#   in_NN.png     photos resized on x86 to the model's input size, lossless: both sides feed the network
#                 the same pixels, so these rows compare the runtimes' kernels, decoding and NMS (strict)
#   photo_NN.jpg  photos as they are: the pre-processing resize runs on each side too (see ALLOWANCE)
IMGDIR=$OUT/images
make_images() {
    rm -rf "$IMGDIR"
    mkdir -p "$IMGDIR"
    "$HOST_PY" - "$PHOTO_DIR" "$IMGDIR" "$MODELS/tflite_fp32.json" "$IMAGES" "$PHOTOS" <<'PY'
import json, shutil, sys
from pathlib import Path
import cv2
src, dst, spec, n_in, n_photo = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
spec = json.load(open(spec))
size = (int(spec["input_width"]), int(spec["input_height"]))
photos = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file())
if not photos:
    sys.exit(f"no photos in {src}")
for i, p in enumerate(photos[:n_in]):
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    cv2.imwrite(str(dst / f"in_{i:02d}.png"), cv2.resize(img, size, interpolation=cv2.INTER_AREA))
for i, p in enumerate(photos[:n_photo]):
    shutil.copy(p, dst / f"photo_{i:02d}{p.suffix.lower()}")
print(f"{min(n_in, len(photos))} input-size frames {size[0]}x{size[1]}, {min(n_photo, len(photos))} photos from {src}")
PY
}

# the same script on both sides: versions, the wheels' tags, and the photos resized as the
# pre-processing does (INTER_LINEAR) and bit-exactly (INTER_LINEAR_EXACT)
PROBE_PY=$(cat <<'PY'
import json, platform, sys
from importlib import metadata
from pathlib import Path
import cv2, numpy as np, onnxruntime
images, width, height, out_npz, out_json = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
info = {"machine": platform.machine(), "python": platform.python_version(), "numpy": np.__version__,
        "opencv": cv2.__version__, "onnxruntime": onnxruntime.__version__}
try:
    info["ai_edge_litert"] = metadata.version("ai-edge-litert")
    from ai_edge_litert import interpreter  # noqa: F401
except Exception as exc:  # reported, not fatal here: the detect runs say what fails
    info["ai_edge_litert"] = f"{type(exc).__name__}: {exc}"
wheels = {}
for dist in metadata.distributions():
    text = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]
    wheels[dist.metadata["Name"]] = {"version": dist.version, "tags": tags}
info["wheels"] = dict(sorted(wheels.items(), key=lambda kv: kv[0].lower()))
arrays = {}
for p in sorted(images.glob("photo_*")):
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    for name in ("INTER_LINEAR", "INTER_LINEAR_EXACT"):
        arrays[f"{p.name}|{name}"] = cv2.resize(img, (width, height), interpolation=getattr(cv2, name))
np.savez_compressed(out_npz, **arrays)
json.dump(info, open(out_json, "w"), indent=1)
print(json.dumps({k: v for k, v in info.items() if k != "wheels"}))
PY
)
SIZE=$("$HOST_PY" -c 'import json, sys; s = json.load(open(sys.argv[1])); print(s["input_width"], s["input_height"])' \
    "$MODELS/tflite_fp32.json")

x86_reference() {
    local m
    for m in "${MODEL_NAMES[@]}"; do
        "$HOST_PY" -m edgedet.cli detect --model "$MODELS/$(model_file "$m")" --threads "$THREADS" \
            --json "$X86/$m.json" "$IMGDIR"
    done
    # the models' own score thresholds: a detection this close to one may legitimately come and go
    "$HOST_PY" - "$MODELS" "$X86/thresholds.tsv" "${MODEL_NAMES[@]}" <<'PY'
import sys
from edgedet.edge.runtime.detector import Detector
models, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(out, "w") as f:
    for n in names:
        path = f"{models}/{n}.{'onnx' if n.startswith('onnx') else 'tflite'}"
        f.write(f"{n}\t{Detector.from_model(path, threads=1).spec.score_threshold}\n")
PY
    # shellcheck disable=SC2086  # SIZE is "W H"
    "$HOST_PY" -c "$PROBE_PY" "$IMGDIR" $SIZE "$X86/resize.npz" "$X86/versions.json"
    "$HOST_PY" -m pip list --format=freeze >"$X86/pip-freeze.txt" 2>/dev/null || true
}
step "x86 check images" "$LOGS/images.log" make_images
[ "$STEP_RC" = 0 ] || setup_failed "making the check images (see $LOGS/images.log)"
step "x86 reference (detect x4, probe)" "$LOGS/x86-reference.log" x86_reference

if [ -n "$ROOTFS_JOB" ]; then
    say "rootfs: waiting for mmdebstrap"
    wait "$ROOTFS_JOB" || setup_failed "mmdebstrap (see $LOGS/rootfs.log)"
    ROOTFS_JOB=""
fi

# ---------------------------------------------------------------------------------------------------
# the run's root: an overlay on the cached rootfs (a copy where overlayfs is not available)

remove_run
[ ! -e "$RUN" ] || setup_failed "$RUN is left from an earlier run and cannot be removed"
mkdir -p "$RUN/upper" "$RUN/work" "$ROOT"
if mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$RUN/upper,workdir=$RUN/work" "$ROOT" 2>/dev/null; then
    note "rootfs: an overlay on the cached rootfs"
else
    say "overlayfs not available here: copying the rootfs"
    cp -a "$ROOTFS/." "$ROOT/"
    note "rootfs: a copy of the cached rootfs (no overlayfs)"
fi

write_cpuinfo() {  # a Raspberry Pi 4 style /proc/cpuinfo: Cortex-A72 (0xd08), one block per host core
    local n
    for ((n = 0; n < THREADS; n++)); do
        printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$n"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
    done
    printf 'Hardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: qemu-user %s (edgedet device-check)\n' "$QEMU_CPU"
}

copy_host_file() {  # copy_host_file PATH: the host's file to the same path in the root
    [ -f "$1" ] || return 0
    mkdir -p "$ROOT$(dirname "$1")"
    cp -L "$1" "$ROOT$1"
}

configured_constraints() {  # pip's constraint files from the host's configuration (PIP_CONSTRAINT overrides them)
    if [ -n "${PIP_CONSTRAINT:-}" ]; then
        printf '%s' "$PIP_CONSTRAINT"
    else
        "$HOST_PY" -m pip config get global.constraint 2>/dev/null || true
    fi
}

prepare_root() {
    local f interp value
    # name resolution, CAs and proxies: the host's
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    cp -L /etc/hosts "$ROOT/etc/hosts"
    copy_host_file /etc/ssl/certs/ca-certificates.crt
    for f in /usr/local/share/ca-certificates/*; do copy_host_file "$f"; done
    host_apt_options | sed 's/$/;/' >"$ROOT/etc/apt/apt.conf.d/99device-check-host"
    # pip's configuration: files, and the files and folders they (and PIP_* variables) name
    copy_host_file /etc/pip.conf
    if [ -d /etc/xdg/pip ]; then
        mkdir -p "$ROOT/etc/xdg"
        cp -rL /etc/xdg/pip "$ROOT/etc/xdg/"
    fi
    for f in .config/pip/pip.conf .pip/pip.conf; do
        if [ -f "$HOME/$f" ]; then
            mkdir -p "$(dirname "$ROOT/root/$f")"
            cp -L "$HOME/$f" "$ROOT/root/$f"
        fi
    done
    : >"$RUN/pip-dirs"
    while IFS= read -r value; do
        value=${value#file://}
        case "$value" in /*) ;; *) continue ;; esac
        if [ -f "$value" ]; then
            copy_host_file "$value"
        elif [ -d "$value" ]; then
            # bound read-only into the root by mount_root; a PEP 503 index (".../simple") links its
            # files relative to itself (../../files/...): its parent goes in whole
            case "$value" in */simple|*/simple/) value=$(dirname "$value") ;; esac
            printf '%s\n' "$value" >>"$RUN/pip-dirs"
        fi
    done < <({ "$HOST_PY" -m pip config list 2>/dev/null | sed -n "s/^[^=]*='\(.*\)'$/\1/p"; env | sed -n 's/^PIP_[A-Z_]*=//p'; } \
        | tr ' ' '\n' | sort -u)
    sort -u -o "$RUN/pip-dirs" "$RUN/pip-dirs"
    sed 's/^/pip folder bound read-only: /' "$RUN/pip-dirs"
    # onnxruntime crashes parsing the x86 /proc/cpuinfo under qemu: an ARM one is bound over it
    write_cpuinfo >"$RUN/cpuinfo"
    # a binfmt entry without the F flag looks its interpreter up inside the root
    interp=$(sed -n 's/^interpreter //p' "$BINFMT_ENTRY")
    if ! grep -q '^flags:.*F' "$BINFMT_ENTRY"; then
        mkdir -p "$ROOT$(dirname "$interp")"
        cp -L "$(command -v qemu-aarch64-static)" "$ROOT$interp"
        note "binfmt entry without F: copied qemu-aarch64-static to $interp in the root"
    fi
    # the project as a checkout copied to a board has it: tracked and untracked-but-not-ignored files
    mkdir -p "$ROOT/opt/edgedet-src" "$ROOT/check/models" "$ROOT/check/out"
    if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
        # shellcheck disable=SC2016  # the inner sh expands it
        (cd "$REPO" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r sh -c \
            'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh | tar --null -T - -cf -) \
            | tar -C "$ROOT/opt/edgedet-src" -xf -
    else
        tar -C "$REPO" --exclude=./.venv --exclude=./outputs --exclude=./build --exclude=./.git \
            --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$ROOT/opt/edgedet-src" -xf -
    fi
    cp "$MODELS"/*.onnx "$MODELS"/*.tflite "$MODELS"/*.json "$ROOT/check/models/"
    cp -r "$IMGDIR" "$ROOT/check/images"
    printf '%s\n' "$PROBE_PY" >"$ROOT/check/probe.py"
    # the host's versions of the packages that compute, so that only the architecture differs
    # (DEVICE_CHECK_PIN=0: whatever pip resolves today)
    : >"$ROOT/check/pins.txt"
    if [ "$PIN" = 1 ] && [ -s "$X86/pip-freeze.txt" ]; then
        grep -iE '^(numpy|onnxruntime|ai[-_]edge[-_]litert|opencv[-_]python[-_]headless)==' "$X86/pip-freeze.txt" \
            >"$ROOT/check/pins.txt" || true
    fi
    cat "$ROOT/check/pins.txt"
}

mount_root() {
    local d
    mount -t proc proc "$ROOT/proc"
    mount --bind "$RUN/cpuinfo" "$ROOT/proc/cpuinfo"
    mount --rbind /sys "$ROOT/sys"
    mount --rbind /dev "$ROOT/dev"
    mount -t tmpfs -o mode=1777 tmpfs "$ROOT/tmp"
    mkdir -p "$CACHE/pip-cache" "$ROOT/root/.cache/pip"
    mount --bind "$CACHE/pip-cache" "$ROOT/root/.cache/pip"
    while IFS= read -r d; do
        [ -n "$d" ] || continue
        mkdir -p "$ROOT$d"
        mount --bind "$d" "$ROOT$d"
        if ! mount -o remount,bind,ro "$ROOT$d"; then  # never leave a host folder writable in the root
            umount "$ROOT$d"
            note "pip folder $d: not bound (could not make it read-only)"
        fi
    done <"$RUN/pip-dirs"
}

CHROOT_ENV=(env -i "HOME=/root" "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "LANG=C.UTF-8"
    "TERM=dumb" "QEMU_CPU=$QEMU_CPU" "PIP_ROOT_USER_ACTION=ignore" "PYTHONUNBUFFERED=1")
while IFS= read -r -d '' kv; do
    case "${kv%%=*}" in
        PIP_*|http_proxy|https_proxy|no_proxy|HTTP_PROXY|HTTPS_PROXY|NO_PROXY|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE)
            CHROOT_ENV+=("$kv") ;;
    esac
done < <(env -0)
in_root() { "${CHROOT_ENV[@]}" chroot "$ROOT" /bin/bash -euo pipefail -c "$1"; }

step "arm64 root: prepare" "$LOGS/root.log" prepare_root
[ "$STEP_RC" = 0 ] || setup_failed "preparing the root (see $LOGS/root.log)"
mount_root
# shellcheck disable=SC2016  # expanded inside the root
step "arm64 sanity (uname, python3)" "$LOGS/arm64-sanity.log" in_root \
    'uname -m; grep -m1 "CPU part" /proc/cpuinfo; python3 -c "import platform, sys; print(platform.machine(), sys.version)"
     [ "$(uname -m)" = aarch64 ]'
[ "$STEP_RC" = 0 ] || setup_failed "python3 does not run in the arm64 root (see $LOGS/arm64-sanity.log)"

# ---------------------------------------------------------------------------------------------------
# arm64: deploy/install-rpi.sh (the install: a venv with .[edge]; no systemd running in a chroot)

install_rpi() {
    local constraints
    constraints="/check/pins.txt $(configured_constraints)"
    # --only-binary=:all: for every pip call of the installer: pip then cannot build any dependency
    # from an sdist (it fails instead), so what installs is aarch64 (or pure Python) wheels only
    in_root "
        cp /check/models/tflite_int8.tflite /check/models/tflite_int8.json /root/
        PIP_ONLY_BINARY=:all: PIP_CONSTRAINT='$constraints' \
            /opt/edgedet-src/deploy/install-rpi.sh --pip-opencv --model /root/tflite_int8.tflite
    "
    # shellcheck disable=SC2016  # expanded inside the root
    in_root '
        echo "--- checks"
        id edgedet
        test -x /opt/edgedet/venv/bin/edgedet
        grep -x "model: /var/lib/edgedet/models/tflite_int8.tflite" /etc/edgedet/camera.yaml
        test -f /var/lib/edgedet/models/tflite_int8.json
        test "$(stat -c %a:%G /etc/edgedet/token)" = 640:edgedet
        test -f /etc/systemd/system/edgedet.service
        test -L /etc/systemd/system/multi-user.target.wants/edgedet.service && echo "unit enabled (wants link)"
        /opt/edgedet/venv/bin/python -m pip check
        if /opt/edgedet/venv/bin/python -c "import torch" 2>/dev/null; then echo "torch in the edge install" >&2; exit 1; fi
        if /opt/edgedet/venv/bin/python -c "import tensorflow" 2>/dev/null; then echo "tensorflow in the edge install" >&2; exit 1; fi
        echo "checks ok"
    '
}
step "arm64 install-rpi.sh (chroot)" "$LOGS/arm64-install-rpi.log" install_rpi
INSTALL_RPI_RC=$STEP_RC
VENV=/opt/edgedet/venv
if [ ! -x "$ROOT$VENV/bin/edgedet" ]; then
    # install-rpi.sh failed before its venv: the same install by hand, so that parity is still checked
    VENV=/check/venv
    pip_install() {
        in_root "
            python3 -m venv $VENV
            PIP_CONSTRAINT='/check/pins.txt $(configured_constraints)' \
                $VENV/bin/python -m pip install --only-binary=:all: '/opt/edgedet-src[edge]'
        "
    }
    step "arm64 pip install --only-binary .[edge]" "$LOGS/arm64-pip.log" pip_install
fi

# ---------------------------------------------------------------------------------------------------
# arm64: probe, detect, bench

ARM_OK=0
if [ -x "$ROOT$VENV/bin/edgedet" ]; then
    step "arm64 probe (versions, wheels, resize)" "$LOGS/arm64-probe.log" in_root \
        "$VENV/bin/python /check/probe.py /check/images $SIZE /check/out/resize.npz /check/out/versions.json"
    [ "$STEP_RC" = 0 ] && ARM_OK=1
fi
arm_detect() {
    in_root "$VENV/bin/edgedet detect --model /check/models/$(model_file "$1") --threads $THREADS \
        --json /check/out/$1.json /check/images"
}
arm_bench() {  # the two quickest models; bench report insists on 50 timed runs (and 5 warm-up) each
    in_root "cd /check/out && $VENV/bin/edgedet bench report --models /check/models/tflite_int8.tflite \
        /check/models/onnx_int8.onnx --runs 50 --threads $THREADS --out /check/out/bench"
}
if [ "$ARM_OK" = 1 ]; then
    for m in "${MODEL_NAMES[@]}"; do
        step "arm64 detect $m" "$LOGS/arm64-detect-$m.log" arm_detect "$m"
    done
    step "arm64 bench report (2 models)" "$LOGS/arm64-bench.log" arm_bench
fi

# ---------------------------------------------------------------------------------------------------
# arm64: the installed daemon, as the unit would start it, for a few seconds

http_get() {  # http_get URL BODY_FILE [TOKEN]: prints the status code (0: no answer), the body to BODY_FILE
    "$HOST_PY" - "$@" <<'PY'
import sys, urllib.error, urllib.request
url, body_file = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url)
if len(sys.argv) > 3:
    req.add_header("Authorization", f"Bearer {sys.argv[3]}")
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
except OSError as e:
    status, body = 0, str(e).encode()
with open(body_file, "wb") as f:
    f.write(body)
print(status)
PY
}

camera_run() {
    local port events code token t0 n=0 rc=0 pid waited=0 status=0
    port=$("$HOST_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$ROOT/var/lib/edgedet/check-images"
    cp "$IMGDIR"/* "$ROOT/var/lib/edgedet/check-images/"
    in_root 'chown -R edgedet:edgedet /var/lib/edgedet/check-images'
    events=$ROOT/var/log/edgedet/events.jsonl
    rm -f "$events"
    # the unit's ExecStart as its User=, WorkingDirectory= and Environment= say, with the source
    # overridden (the example config's libcamera pipeline has no camera here) and a free port
    "${CHROOT_ENV[@]}" HOME=/var/lib/edgedet chroot "$ROOT" /bin/sh -c \
        "cd /var/lib/edgedet && exec setpriv --reuid=edgedet --regid=edgedet --init-groups \
        /opt/edgedet/venv/bin/edgedet camera --config /etc/edgedet/camera.yaml \
        --source /var/lib/edgedet/check-images --http 127.0.0.1:$port --threads $THREADS" \
        >"$ARM/camera.log" 2>&1 &
    pid=$!
    echo "$pid" >"$RUN/daemon.pid"
    t0=$(now)
    code=0
    while [ "$(elapsed "$t0" | cut -d. -f1)" -lt 180 ] && kill -0 "$pid" 2>/dev/null; do
        code=$(http_get "http://127.0.0.1:$port/healthz" "$ARM/healthz.json")
        [ "$code" = 200 ] && break
        sleep 1
    done
    echo "healthz: $code after $(elapsed "$t0") s"
    if [ "$code" != 200 ]; then
        echo "--- daemon log"
        cat "$ARM/camera.log"
        return 1
    fi
    # enough frames' events (not tracking ones), and every image of the folder in one of them (the
    # daemon drops frames that come while it is busy, so one pass may not do)
    local want_images seen=0
    want_images=$(find "$IMGDIR" -maxdepth 1 -type f | wc -l)
    while [ "$(elapsed "$t0" | cut -d. -f1)" -lt 240 ] && kill -0 "$pid" 2>/dev/null; do
        n=$( (grep -c '"detections"' "$events") 2>/dev/null || true)
        seen=$( (grep -oE '"source_position": ?[0-9]+' "$events" | sort -u | wc -l) 2>/dev/null || true)
        n=${n:-0}
        seen=${seen:-0}
        [ "$n" -ge "$CAMERA_FRAMES" ] && [ "$seen" -ge "$want_images" ] && break
        sleep 1
    done
    echo "events: $n frames' events covering $seen of $want_images images after $(elapsed "$t0") s" \
        "(want $CAMERA_FRAMES, all)"
    [ "$n" -ge "$CAMERA_FRAMES" ] && [ "$seen" -ge "$want_images" ] || rc=1
    token=$(cat "$ROOT/etc/edgedet/token")
    echo "/healthz: $(cat "$ARM/healthz.json")"
    code=$(http_get "http://127.0.0.1:$port/metrics" /dev/null)
    echo "/metrics without the token: $code (want 401)"
    [ "$code" = 401 ] || rc=1
    code=$(http_get "http://127.0.0.1:$port/metrics" "$ARM/metrics.txt" "$token")
    echo "/metrics with the token: $code, $(grep -c '^edgedet_' "$ARM/metrics.txt" || true) edgedet_ samples"
    [ "$code" = 200 ] || rc=1
    code=$(http_get "http://127.0.0.1:$port/detections" "$ARM/detections.json" "$token")
    echo "/detections with the token: $code"
    [ "$code" = 200 ] || rc=1
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 30 ]; do
        sleep 1
        waited=$((waited + 1))
    done
    wait "$pid" || status=$?
    rm -f "$RUN/daemon.pid"
    echo "SIGTERM: exit status $status after ${waited} s (want 0)"
    [ "$status" -eq 0 ] || rc=1
    cp "$events" "$ARM/events.jsonl" 2>/dev/null || true
    echo "--- daemon log (tail)"
    tail -n 20 "$ARM/camera.log"
    return "$rc"
}
if [ -x "$ROOT/opt/edgedet/venv/bin/edgedet" ] && [ -f "$ROOT/etc/edgedet/camera.yaml" ]; then
    step "arm64 camera daemon (installed)" "$LOGS/arm64-camera.log" camera_run
else
    say "camera daemon: skipped, install-rpi.sh did not install it"
    FAILURES+=("camera daemon (not installed)")
fi

# ---------------------------------------------------------------------------------------------------
# compare, table, summary

cp -r "$ROOT/check/out/." "$ARM/" 2>/dev/null || true
# Photos go through cv2.resize(INTER_LINEAR) on each side: OpenCV's 8-bit bilinear resize takes a
# different SIMD path on NEON than on SSE/AVX and rounds part of the pixels one level apart (the
# resize probe row shows how many; INTER_LINEAR_EXACT is identical). Fed to the network, that moves
# fp32 scores by a few 1e-3 and int8 ones by a few quantisation steps, and boxes slightly.
ALLOWANCE=(--allow "* photos" 0.05 0.90 "the input differs, not the runtime: cv2.resize INTER_LINEAR rounds differently on NEON than on SSE/AVX (see the resize probe)")
compare_args=(--group in_ "input-size" "${ALLOWANCE[@]}")
if [ "$PHOTOS" -gt 0 ]; then
    compare_args+=(--group photo_ "photos" --resize-probe "$X86/resize.npz" "$ARM/resize.npz")
fi
for m in "${MODEL_NAMES[@]}"; do
    label=${m/_/ }
    compare_args+=(--case "$label" "$X86/$m.json" "$ARM/$m.json")
    threshold=$(awk -F'\t' -v m="$m" '$1 == m { print $2 }' "$X86/thresholds.tsv" 2>/dev/null || true)
    [ -n "$threshold" ] && compare_args+=(--threshold "$label" "$threshold")
    [ "$m" = tflite_int8 ] && [ -n "$threshold" ] && compare_args+=(--threshold "camera tflite int8" "$threshold")
done
compare_args+=(--events "camera tflite int8" "$X86/tflite_int8.json" "$ARM/events.jsonl")
compare_args+=(--bench "$ARM/bench/report.json" --bench-models 2)

T_TOTAL=$(elapsed "$T_START")
record "total (after pre-flight)" "$T_TOTAL" -
"$HOST_PY" - "$OUT/meta.json" "$TIMINGS" "$MODEL_SOURCE" "$QEMU_CPU" "$ROOTFS" "$ARM/versions.json" "$X86/versions.json" \
    "$IMAGES" "$PHOTOS" "$LOGS/arm64-install-rpi.log" "$INSTALL_RPI_RC" "$VENV" "$NOTES" <<'PY'
import json, os, sys
(out, timings, source, cpu, rootfs, arm, x86, images, photos, install_log, install_rc, venv, notes) = sys.argv[1:]
def load(path):
    return json.load(open(path)) if os.path.exists(path) else None
rows = [line.rstrip("\n").split("\t") for line in open(timings) if line.strip()]
meta = {
    "models": source, "input_size_frames": int(images), "photos": int(photos), "qemu_cpu": cpu, "rootfs": rootfs,
    "timings_s": [{"step": r[0], "seconds": float(r[1]), "status": r[2]} for r in rows],
    "arm64": load(arm), "x86": load(x86), "venv": venv,
    "install_rpi": {
        "status": int(install_rc),
        "messages": [l.rstrip() for l in open(install_log) if l.startswith("edgedet-install:")]
        if os.path.exists(install_log) else None,
    },
    "notes": [l.strip() for l in open(notes) if l.strip()],
}
json.dump(meta, open(out, "w"), indent=1)
PY
rc=0
"$HOST_PY" "$HERE/device_check_compare.py" "${compare_args[@]}" --meta "$OUT/meta.json" --summary "$OUT/summary.json" \
    >"$OUT/table.txt" || rc=$?
echo
cat "$OUT/table.txt"
echo
say "timings (s):"
awk -F'\t' '{ printf "  %-42s %7s  %s\n", $1, $2, $3 }' "$TIMINGS"
if [ "${#FAILURES[@]}" -gt 0 ]; then
    say "FAILED steps: ${FAILURES[*]}"
    rc=$EXIT_FAIL
fi
say "summary: $OUT/summary.json; logs: $LOGS"
if [ "$rc" -ne 0 ]; then
    say "result: FAILED"
    exit "$EXIT_FAIL"
fi
say "result: ok"
