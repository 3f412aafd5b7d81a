#!/bin/sh
# promtool (Debian package `prometheus`) checks and unit-tests the generated alert rules.
# Installed with apt when missing and running as root; otherwise says how, and fails.
set -eu
command -v promtool >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "promtool not found: installing the Debian package prometheus" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
    command -v promtool >/dev/null 2>&1 && exit 0
fi
echo "promtool not found: run  sudo apt-get update && sudo apt-get install -y prometheus" >&2
exit 1
