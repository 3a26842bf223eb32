#!/usr/bin/env bash
# Installs `hoover serve` as a systemd system service (run as root on the server):
# a `hoover` system user, the binary in /usr/local/bin, the unit, and /etc/hoover/authorized_keys.
# Usage: sudo scripts/install-server.sh [path/to/hoover]   (default: target/release/hoover)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/hoover}"
[ -x "$bin" ] || { echo "install-server: $bin not found; build it with: cargo build --release" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "install-server: run as root (sudo)" >&2; exit 1; }
id hoover >/dev/null 2>&1 || useradd --system --home-dir /var/lib/hoover --shell /usr/sbin/nologin hoover
install -m 0755 "$bin" /usr/local/bin/hoover
install -d -m 0755 /etc/hoover
[ -f /etc/hoover/authorized_keys ] || install -m 0644 /dev/null /etc/hoover/authorized_keys
install -m 0644 systemd/hoover-serve.service /etc/systemd/system/hoover-serve.service
systemctl daemon-reload
systemctl enable --now hoover-serve.service
echo "install-server: running. Add each laptop's public key to /etc/hoover/authorized_keys;"
echo "install-server: status: systemctl status hoover-serve; logs: journalctl -u hoover-serve"
