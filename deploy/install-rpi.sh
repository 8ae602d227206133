#!/usr/bin/env bash
# Install the edgedet camera daemon on a Raspberry Pi running Raspberry Pi OS 64-bit (Bookworm).
#   sudo deploy/install-rpi.sh --model model.onnx        (from an edgedet checkout; --help for options)
# Camera modules are read through libcamera's GStreamer element, which only the distribution's OpenCV
# (python3-opencv) can open, so by default the venv sees system packages and uses that cv2; with
# --pip-opencv (USB webcams, RTSP, files only) the opencv-python-headless wheel is used instead.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

PLATFORM="Raspberry Pi OS 64-bit"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONFIG_EXAMPLE="$HERE/config-rpi.yaml"
SYSTEM_OPENCV=${SYSTEM_OPENCV:-1}
APT_PACKAGES=(python3 python3-venv python3-pip python3-numpy)

platform_check() {
    if ! grep -qi "raspberry pi" /proc/device-tree/model 2>/dev/null; then
        say "warning: this does not look like a Raspberry Pi; going on"
    fi
    if [ "$SYSTEM_OPENCV" = "1" ]; then
        APT_PACKAGES+=(python3-opencv gstreamer1.0-libcamera gstreamer1.0-plugins-base gstreamer1.0-plugins-good)
    fi
}

# shellcheck source=install-common.sh
. "$HERE/install-common.sh"
install_main "$@"
