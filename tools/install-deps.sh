#!/usr/bin/env bash
# Installs what building and testing glmlite needs on a fresh Debian machine,
# skipping whatever is already there. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v gcc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
/usr/bin/python3 -c 'import numpy' 2>/dev/null || need+=(python3-numpy)
[ -f /usr/share/unicode/UnicodeData.txt ] || need+=(unicode-data)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v clang >/dev/null || need+=(clang)
command -v curl >/dev/null || need+=(curl)
# libFuzzer's runtime ships in clang's runtime package
compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null || need+=(libclang-rt-14-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "install-deps: apt-get install ${need[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# npm oracles and clients for the tests (versions pinned by package-lock.json)
if [ ! -d tests/node/node_modules ] || [ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]; then
    echo "install-deps: npm ci in tests/node"
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
fi
