#!/usr/bin/env bash
# Install the edgedet camera daemon on an NVIDIA Jetson running JetPack 6 (L4T R36, Ubuntu 22.04,
# Python 3.10; JetPack 5's Python 3.8 is too old).
#   sudo deploy/install-jetson.sh --model model.onnx     (from an edgedet checkout; --help for options)
# CSI cameras are read through nvarguscamerasrc, which only JetPack's OpenCV (built with GStreamer) can
# open, so by default the venv sees system packages and uses that cv2; --pip-opencv uses the
# opencv-python-headless wheel instead (USB webcams, RTSP, files only). ONNX Runtime from PyPI runs on
# the CPU cores.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

PLATFORM="NVIDIA Jetson (JetPack 6)"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONFIG_EXAMPLE="$HERE/config-jetson.yaml"
SYSTEM_OPENCV=${SYSTEM_OPENCV:-1}
APT_PACKAGES=(python3 python3-venv python3-pip python3-numpy)

platform_check() {
    if [ ! -f /etc/nv_tegra_release ]; then
        say "warning: /etc/nv_tegra_release is missing: this does not look like a Jetson; going on"
    fi
    if [ "$SYSTEM_OPENCV" = "1" ] && ! python3 -c 'import cv2' >/dev/null 2>&1; then
        # JetPack's OpenCV (with GStreamer and CUDA) when the apt sources have it, else Ubuntu's
        if apt-cache show nvidia-opencv >/dev/null 2>&1; then
            APT_PACKAGES+=(nvidia-opencv)
        else
            APT_PACKAGES+=(python3-opencv)
        fi
    fi
    if [ "$SYSTEM_OPENCV" = "1" ]; then
        APT_PACKAGES+=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good)
    fi
}

# shellcheck source=install-common.sh
. "$HERE/install-common.sh"
install_main "$@"
