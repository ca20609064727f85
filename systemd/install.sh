#!/usr/bin/env bash
# Install gate as a systemd service on Raspberry Pi OS (Bookworm). Idempotent:
# run it again after `git pull` to update. Needs root.
#
#   sudo systemd/install.sh            # install or update, enable and (re)start
#   systemd/install.sh --root DIR      # stage the files under DIR only (no users, no systemctl)
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
ROOT=""
if [ "${1:-}" = "--root" ]; then ROOT="${2:?--root needs a directory}"; fi

PREFIX="$ROOT/opt/gate"
ETC="$ROOT/etc/gate"
UNIT_DIR="$ROOT/etc/systemd/system"
JOURNALD_DIR="$ROOT/etc/systemd/journald.conf.d"
STATE="$ROOT/var/lib/gate"

say() { echo "install: $*"; }

if [ -z "$ROOT" ]; then
  [ "$(id -u)" -eq 0 ] || { echo "install: run as root (sudo $0)" >&2; exit 1; }
  # The service user, in the groups that own the devices a lane uses.
  getent group gate >/dev/null || groupadd --system gate
  id gate >/dev/null 2>&1 || useradd --system --gid gate --home-dir /var/lib/gate --shell /usr/sbin/nologin gate
  for g in gpio dialout video audio i2c; do
    getent group "$g" >/dev/null && usermod -aG "$g" gate
  done
fi

# The code: a copy at /opt/gate (a checkout there is used in place).
mkdir -p "$PREFIX"
if [ "$SRC" != "$(cd "$PREFIX" && pwd)" ]; then
  tar -C "$SRC" --exclude=.venv --exclude=.git --exclude=var --exclude='__pycache__' -cf - . | tar -C "$PREFIX" -xf -
fi
if [ -z "$ROOT" ]; then
  say "python environment in $PREFIX/.venv"
  (cd "$PREFIX" && scripts/setup --pi)
fi

# Configuration: never overwrite what the site has edited.
mkdir -p "$ETC/keys"
chmod 0750 "$ETC" "$ETC/keys"
if [ ! -e "$ETC/gate.toml" ]; then
  install -m 0640 "$SRC/config/gate.example.toml" "$ETC/gate.toml"
  say "wrote $ETC/gate.toml from the example: edit it, then: gate config check /etc/gate/gate.toml"
else
  say "kept $ETC/gate.toml"
fi
mkdir -p "$STATE"
chmod 0750 "$STATE"

install -D -m 0644 "$SRC/systemd/gate.service" "$UNIT_DIR/gate.service"
install -D -m 0644 "$SRC/systemd/99-gate-serial.rules" "$ROOT/etc/udev/rules.d/99-gate-serial.rules"
# The journal's size and writes, for an SD card (README: the appliance on an SD card).
install -D -m 0644 "$SRC/systemd/journald-gate.conf" "$JOURNALD_DIR/60-gate.conf"

if [ -z "$ROOT" ]; then
  chown -R root:gate "$ETC"
  chown gate:gate "$STATE"
  udevadm control --reload-rules 2>/dev/null || true
  systemctl restart systemd-journald || say "journald not restarted: its limits apply from the next boot"
  systemctl daemon-reload
  systemctl enable gate.service
  if "$PREFIX/.venv/bin/gate" config check /etc/gate/gate.toml; then
    systemctl restart gate.service
    say "gate.service (re)started: journalctl -u gate -f"
  else
    say "gate.service enabled but not started: fix /etc/gate/gate.toml first"
  fi
fi
say "done"
