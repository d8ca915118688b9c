#!/bin/sh
# Install Debian's chromium so the test suite can check the HTML report in a real browser.
# Never fails: without apt-get, root or a network the browser test skips and says why.
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: apt-get not found; the browser test of the report will be skipped" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-chromium: not root; the browser test of the report will be skipped" >&2
        exit 0
    fi
fi
echo "install-chromium: installing Debian's chromium (apt-get)" >&2
if $SUDO apt-get update -qq >/dev/null 2>&1 \
    && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
    echo "install-chromium: $(chromium --version 2>/dev/null)" >&2
else
    echo "install-chromium: apt-get could not install chromium; the browser test of the report will be skipped" >&2
fi
exit 0
