#!/usr/bin/env bash
# Set up trainbox on this machine: the system packages it needs and a virtual
# environment in .venv with trainbox installed into it. Both README commands
# and CI call this; it is safe to run again (it installs only what is missing).
#
#   scripts/setup.sh sandbox   what the sandbox needs: `up --sandbox`, train, down
#   scripts/setup.sh dev       everything the tests need (what CI installs)
#
# As root (a container, a fresh VM, CI) it runs apt-get itself; otherwise
# through sudo. On a machine without apt-get it says what to install by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-}
case "$what" in
  sandbox)
    # openssh-server: the process box is a real sshd; rsync: the sync's
    # comparisons; python3-venv: the venv module of Debian's Python. As root
    # the sandbox boots its box as a Debian container (systemd-nspawn on a
    # debootstrap'ed root): without root the process box is used instead.
    debs="openssh-server openssh-client rsync python3-venv"
    if [ "$(id -u)" -eq 0 ]; then debs="$debs systemd-container debootstrap"; fi
    extras="train,sandbox" ;;
  dev)
    # The tests also boot the container box, and check report.html in a
    # real headless Chromium.
    debs="openssh-server openssh-client rsync python3-venv systemd-container debootstrap chromium"
    extras="train,dev" ;;
  *)
    echo "usage: scripts/setup.sh sandbox|dev" >&2
    exit 64 ;;
esac

say() { printf 'setup: %s\n' "$*" >&2; }

missing=""
for deb in $debs; do
  dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "install ok installed" || missing="$missing $deb"
done
if [ -n "$missing" ]; then
  if ! command -v apt-get >/dev/null; then
    say "install these with your system's package manager, then run this again:$missing"
    exit 69
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { say "not root and no sudo: install as root:$missing"; exit 69; }
    sudo="sudo"
  fi
  say "installing system packages:$missing"
  started=$SECONDS
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq $missing; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    say "apt-get failed (the lines above); its whole output: $log"
    exit 69
  fi
  rm -f "$log"
  say "system packages installed in $((SECONDS - started)) s"
fi

started=$SECONDS
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
say "installing trainbox ($extras) into .venv (the first time takes a minute or two)"
log=$(mktemp)
if ! { .venv/bin/python -m pip install -qq --upgrade pip && .venv/bin/python -m pip install -qq --progress-bar off -e ".[$extras]"; } >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  say "pip failed (the lines above); its whole output: $log"
  exit 69
fi
rm -f "$log"
count=$(.venv/bin/python -m pip list --format=freeze 2>/dev/null | wc -l)
say "ready: .venv ($count packages, $((SECONDS - started)) s); activate it with \`. .venv/bin/activate\`"
