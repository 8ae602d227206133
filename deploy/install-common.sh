# shellcheck shell=bash
# Shared steps of install-rpi.sh and install-jetson.sh (sourced by them, not run on its own).
#
# The platform script sets PLATFORM, CONFIG_EXAMPLE, APT_PACKAGES (array) and SYSTEM_OPENCV (1: use
# the distribution's OpenCV, which has GStreamer, through a venv made with --system-site-packages),
# may define platform_check, then calls install_main "$@".

PREFIX=${PREFIX:-/opt/edgedet}
CONFIG_DIR=${CONFIG_DIR:-/etc/edgedet}
DATA_DIR=${DATA_DIR:-/var/lib/edgedet}
LOG_DIR=${LOG_DIR:-/var/log/edgedet}
SERVICE_USER=${SERVICE_USER:-edgedet}
UNIT_PATH=/etc/systemd/system/edgedet.service
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODEL=""
START=1
SYSTEMD=""   # running | offline (systemctl there, systemd not running: chroot, container) | absent
SKIPPED=()   # steps left out for want of a running systemd, listed at the end

say() { printf 'edgedet-install: %s\n' "$*"; }
die() { printf 'edgedet-install: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<USAGE
Usage: sudo $0 [--model MODEL.onnx|.tflite] [--pip-opencv|--system-opencv] [--no-start]

Installs the edgedet camera daemon for ${PLATFORM}: a venv in ${PREFIX}/venv with only the 'edge' extra,
the system user '${SERVICE_USER}', ${CONFIG_DIR}/camera.yaml (kept if present), a bearer token in
${CONFIG_DIR}/token, and the systemd unit edgedet.service (enabled; started when the model exists).
Without a running systemd (a chroot, a container, an image build) the unit is written and enabled
(when systemctl is there) but not started; the steps left out are listed at the end.

  --model FILE      copy FILE into ${DATA_DIR}/models/ and point a new config at it
  --system-opencv   use the distribution's OpenCV (GStreamer: CSI cameras); default here: ${SYSTEM_OPENCV}
  --pip-opencv      use the opencv-python-headless wheel (USB/V4L2, RTSP and files only)
  --no-start        install and enable, but do not start the service
Environment: PREFIX, CONFIG_DIR, DATA_DIR, LOG_DIR, SERVICE_USER override the paths above.
USAGE
}

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --model) [ $# -ge 2 ] || die "--model needs a file"; MODEL=$2; shift 2 ;;
            --system-opencv) SYSTEM_OPENCV=1; shift ;;
            --pip-opencv) SYSTEM_OPENCV=0; shift ;;
            --no-start) START=0; shift ;;
            -h|--help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument: $1" ;;
        esac
    done
    if [ -n "$MODEL" ] && [ ! -f "$MODEL" ]; then
        die "model file not found: $MODEL"
    fi
}

check_system() {
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
    [ -f "$REPO_DIR/pyproject.toml" ] || die "run from an edgedet checkout ($REPO_DIR has no pyproject.toml)"
    # sd_booted(3): systemd is running when /run/systemd/system exists; a chroot, a container or an image
    # build has none, and then the unit is written (and enabled when systemctl is there), not started
    if ! command -v systemctl >/dev/null 2>&1; then
        SYSTEMD=absent
        say "warning: systemctl not found: the unit file is written but not enabled or started"
    elif [ -d /run/systemd/system ]; then
        SYSTEMD=running
    else
        SYSTEMD=offline
        say "warning: systemd is not running here (chroot or container?): the unit is installed and enabled, not started"
    fi
    if [ "$(uname -m)" != "aarch64" ]; then
        say "warning: $(uname -m) is not aarch64; these scripts target 64-bit ARM boards"
    fi
}

install_packages() {
    say "installing system packages: ${APT_PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${APT_PACKAGES[@]}"
    python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
        || die "Python $(python3 -c 'import platform; print(platform.python_version())') is too old: edgedet needs 3.10+"
}

create_user() {
    if id "$SERVICE_USER" >/dev/null 2>&1; then
        say "user $SERVICE_USER exists"
    else
        say "creating system user $SERVICE_USER"
        useradd --system --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
    for group in video render; do  # cameras (/dev/video*, /dev/media*) and, on some boards, DMA heaps
        if getent group "$group" >/dev/null; then
            usermod -a -G "$group" "$SERVICE_USER"
        fi
    done
    install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$DATA_DIR" "$DATA_DIR/models" "$LOG_DIR"
}

install_venv() {
    local venv="$PREFIX/venv" site=() constraints
    install -d -m 0755 "$PREFIX"
    if [ "$SYSTEM_OPENCV" = "1" ]; then
        site=(--system-site-packages)
    fi
    if [ -d "$venv" ]; then
        say "updating $venv"
    else
        say "creating $venv ${site[*]}"
        python3 -m venv "${site[@]}" "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    constraints=$(mktemp)
    if [ "$SYSTEM_OPENCV" = "1" ]; then
        # the distribution's cv2 is built against numpy 1.x: a numpy 2 in the venv would break it
        echo "numpy<2" >"$constraints"
    fi
    say "installing edgedet with the 'edge' extra (no torch, no TensorFlow)"
    "$venv/bin/python" -m pip install --quiet --constraint "$constraints" "${REPO_DIR}[edge]"
    rm -f "$constraints"
    if [ "$SYSTEM_OPENCV" = "1" ]; then
        # let the system cv2 (with GStreamer) be the one imported
        "$venv/bin/python" -m pip uninstall --quiet --yes opencv-python-headless opencv-python || true
        "$venv/bin/python" - <<'PY' || die "the system OpenCV cannot be imported from the venv, or has no GStreamer"
import cv2
info = cv2.getBuildInformation()
line = next((l for l in info.splitlines() if l.strip().startswith("GStreamer:")), "GStreamer: NO")
print(f"edgedet-install: OpenCV {cv2.__version__} from {cv2.__file__}; {line.strip()}")
raise SystemExit(0 if "YES" in line else 1)
PY
    fi
    "$venv/bin/edgedet" camera --help >/dev/null
    install -m 0644 "$REPO_DIR/deploy/README.md" "$PREFIX/README.md"
}

install_config() {
    local config="$CONFIG_DIR/camera.yaml" model_target=""
    install -d -m 0755 "$CONFIG_DIR"
    if [ -n "$MODEL" ]; then
        model_target="$DATA_DIR/models/$(basename "$MODEL")"
        install -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0640 "$MODEL" "$model_target"
        local sidecar="${MODEL%.*}.json"  # a .tflite model's spec travels beside it
        if [ -f "$sidecar" ]; then
            install -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0640 "$sidecar" "$DATA_DIR/models/"
        fi
        say "model installed as $model_target"
    fi
    if [ -f "$config" ]; then
        say "keeping the existing $config"
    else
        install -o root -g "$SERVICE_USER" -m 0640 "$CONFIG_EXAMPLE" "$config"
        if [ -n "$model_target" ]; then
            sed -i "s|^model: .*|model: $model_target|" "$config"
        fi
        say "wrote $config (edit the source and model)"
    fi
    if [ ! -f "$CONFIG_DIR/token" ]; then
        (umask 027 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$CONFIG_DIR/token")
        chgrp "$SERVICE_USER" "$CONFIG_DIR/token"
        say "generated the HTTP bearer token in $CONFIG_DIR/token"
    fi
}

install_unit() {
    install -d -m 0755 "$(dirname "$UNIT_PATH")"
    sed -e "s|/opt/edgedet|$PREFIX|g" -e "s|/etc/edgedet|$CONFIG_DIR|g" \
        -e "s|/var/lib/edgedet|$DATA_DIR|g" -e "s|^User=edgedet|User=$SERVICE_USER|" \
        -e "s|^Group=edgedet|Group=$SERVICE_USER|" "$REPO_DIR/deploy/edgedet.service" >"$UNIT_PATH"
    chmod 0644 "$UNIT_PATH"
    local model
    model=$(sed -n 's/^model: *//p' "$CONFIG_DIR/camera.yaml" | head -n 1)
    case "$SYSTEMD" in
        running)
            systemctl daemon-reload
            systemctl enable edgedet.service
            if [ "$START" = "1" ] && [ -n "$model" ] && [ -f "$model" ]; then
                systemctl restart edgedet.service
                say "started: systemctl status edgedet; journalctl -u edgedet -f"
            else
                say "enabled, not started (no model at '${model:-?}' or --no-start): edit $CONFIG_DIR/camera.yaml," \
                    "then: sudo systemctl start edgedet"
            fi
            ;;
        offline)
            # enable only links files, which systemctl does without a running systemd: starts at the next boot
            if systemctl enable edgedet.service; then
                say "installed $UNIT_PATH and enabled it for the next boot"
            else
                say "warning: systemctl enable failed; after booting: sudo systemctl enable --now edgedet"
                SKIPPED+=("enable")
            fi
            SKIPPED+=("systemctl daemon-reload" "start")
            ;;
        *)
            say "wrote $UNIT_PATH; without systemd run the daemon yourself:" \
                "sudo -u $SERVICE_USER $PREFIX/venv/bin/edgedet camera --config $CONFIG_DIR/camera.yaml"
            SKIPPED+=("systemctl daemon-reload" "enable" "start")
            ;;
    esac
}

install_main() {
    parse_args "$@"
    check_system
    if declare -F platform_check >/dev/null; then
        platform_check
    fi
    install_packages
    create_user
    install_venv
    install_config
    install_unit
    if [ "${#SKIPPED[@]}" -gt 0 ]; then
        say "done, without a running systemd; skipped: ${SKIPPED[*]}"
        return 0
    fi
    say "done. Health: curl http://127.0.0.1:8080/healthz ; metrics: curl -H \"Authorization: Bearer \$(sudo cat $CONFIG_DIR/token)\" http://127.0.0.1:8080/metrics"
}
