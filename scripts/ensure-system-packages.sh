#!/bin/sh
# The Debian packages the test suite drives for real: chromium (the dashboard's browser
# test, never a downloaded browser) and prometheus (promtool checks and unit-tests the
# generated alert rules). Installed with apt in one go when missing and running as root;
# otherwise prints the one command to run, and fails: a test never skips a missing part.
set -eu
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages:$missing" >&2
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    [ -x /usr/bin/chromium ] && command -v promtool >/dev/null 2>&1 && exit 0
fi
echo "missing Debian packages:$missing; run  sudo apt-get update && sudo apt-get install -y$missing" >&2
exit 1
