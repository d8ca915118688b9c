#!/bin/sh
# apt-install.sh NAME WHY PACKAGE...: install Debian packages when they are missing, as root or
# with password-less sudo. Never fails: without apt-get, root or the registry it says so, prefixed
# with NAME and followed by WHY (what is then skipped or what to do by hand), and exits 0.
NAME="$1"; WHY="$2"; shift 2
if dpkg -s "$@" >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "$NAME: apt-get not found; $WHY" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "$NAME: not root; $WHY" >&2
        exit 0
    fi
fi
echo "$NAME: installing $* (apt-get)" >&2
if $SUDO apt-get update -qq >/dev/null 2>&1 \
    && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; then
    exit 0
fi
echo "$NAME: apt-get could not install $*; $WHY" >&2
exit 0
