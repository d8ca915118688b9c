#!/bin/sh
# Install Debian font packages for the benchmarks' "letters" data set (letters A-J rendered from
# every installed font family). Only the benchmarks need them; the test suite does not.
# Never fails: without apt-get or root, benchmarks/datasets.py says how many fonts it found.
sh "$(dirname "$0")/apt-install.sh" install-bench-fonts "install the font packages by hand for the letters data set" \
    fonts-dejavu-core fonts-dejavu-extra fonts-urw-base35 fonts-liberation2 fonts-freefont-ttf fonts-texgyre \
    fonts-crosextra-carlito fonts-crosextra-caladea fonts-lato fonts-open-sans fonts-cantarell fonts-linuxlibertine \
    fonts-ebgaramond fonts-roboto-unhinted fonts-noto-mono fonts-comfortaa
