#!/usr/bin/env bash
# Installs what training and evaluating the demo model needs (tools/demo/*.py) on Debian:
# PyTorch, OpenBLAS (without it torch uses the reference BLAS, ~30x slower) and WordNet (data).
# Not needed for building or testing glmlite; `make test` never runs torch.
set -euo pipefail
need=()
/usr/bin/python3 -c 'import torch' 2>/dev/null || need+=(python3-torch)
dpkg -s libopenblas0-pthread >/dev/null 2>&1 || need+=(libopenblas0-pthread)
[ -f /usr/share/wordnet/data.noun ] || need+=(wordnet-base)
/usr/bin/python3 -c 'import numpy' 2>/dev/null || need+=(python3-numpy)
if [ ${#need[@]} -gt 0 ]; then
    echo "install-train-deps: apt-get install ${need[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
