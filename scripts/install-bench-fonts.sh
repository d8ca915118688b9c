#!/bin/sh
# Install Debian font packages for the benchmarks' "letters" data set (letters A-J rendered from
# every installed font family). Only the benchmarks need them; the test suite does not.
# Never fails: without apt-get or root, benchmarks/datasets.py says how many fonts it found.
PACKAGES="fonts-dejavu-core fonts-dejavu-extra fonts-urw-base35 fonts-liberation2 fonts-freefont-ttf fonts-texgyre \
fonts-crosextra-carlito fonts-crosextra-caladea fonts-lato fonts-open-sans fonts-cantarell fonts-linuxlibertine \
fonts-ebgaramond fonts-roboto-unhinted fonts-noto-mono fonts-comfortaa"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-bench-fonts: apt-get not found; install font packages by hand for the letters data set" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-bench-fonts: not root; install these by hand: $PACKAGES" >&2
        exit 0
    fi
fi
if dpkg -s $PACKAGES >/dev/null 2>&1; then
    exit 0
fi
echo "install-bench-fonts: installing Debian font packages (apt-get)" >&2
$SUDO apt-get update -qq >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null 2>&1 \
    || echo "install-bench-fonts: apt-get could not install: $PACKAGES" >&2
exit 0
