#!/bin/sh
# Install Debian's chromium so the test suite can check the HTML report in a real browser.
# Never fails: without apt-get, root or a network the browser test skips and says why.
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
    exit 0
fi
sh "$(dirname "$0")/apt-install.sh" install-chromium "the browser test of the report will be skipped" chromium
if command -v chromium >/dev/null 2>&1; then
    echo "install-chromium: $(chromium --version 2>/dev/null)" >&2
fi
exit 0
