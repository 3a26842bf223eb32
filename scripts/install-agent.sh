#!/usr/bin/env bash
# Installs `hoover watch` as a per-user service: a LaunchAgent on macOS, a systemd user unit on
# Linux. Run as the user whose transcripts are shipped. Configure the server first:
#   mkdir -p ~/.config/hoover && echo 'server = "me@server:2222"' > ~/.config/hoover/config.toml
# Usage: scripts/install-agent.sh [path/to/hoover] | scripts/install-agent.sh --uninstall
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--uninstall" ]; then
  case "$(uname -s)" in
    Darwin)
      launchctl bootout "gui/$(id -u)/com.github.hoover.watch" 2>/dev/null || true
      rm -f "$HOME/Library/LaunchAgents/com.github.hoover.watch.plist" ;;
    *)
      systemctl --user disable --now hoover-watch.service 2>/dev/null || true
      rm -f "$HOME/.config/systemd/user/hoover-watch.service"
      systemctl --user daemon-reload ;;
  esac
  echo "install-agent: removed (the server keeps everything it received)"
  exit 0
fi
bin="${1:-target/release/hoover}"
[ -x "$bin" ] || { echo "install-agent: $bin not found; build it with: cargo build --release" >&2; exit 1; }
case "$(uname -s)" in
  Darwin)
    dest="/usr/local/bin/hoover"
    install -m 0755 "$bin" "$dest" 2>/dev/null || { dest="$HOME/.local/bin/hoover"; mkdir -p "$HOME/.local/bin"; install -m 0755 "$bin" "$dest"; }
    mkdir -p "$HOME/Library/LaunchAgents" "$HOME/Library/Logs/hoover"
    plist="$HOME/Library/LaunchAgents/com.github.hoover.watch.plist"
    sed -e "s#__HOME__#$HOME#g" -e "s#__HOOVER__#$dest#g" launchd/com.github.hoover.watch.plist >"$plist"
    launchctl bootout "gui/$(id -u)/com.github.hoover.watch" 2>/dev/null || true
    launchctl bootstrap "gui/$(id -u)" "$plist"
    echo "install-agent: loaded; logs in ~/Library/Logs/hoover/watch.log; check with: hoover status, hoover doctor" ;;
  *)
    mkdir -p "$HOME/.local/bin" "$HOME/.config/systemd/user"
    install -m 0755 "$bin" "$HOME/.local/bin/hoover"
    install -m 0644 systemd/hoover-watch.service "$HOME/.config/systemd/user/hoover-watch.service"
    systemctl --user daemon-reload
    systemctl --user enable --now hoover-watch.service
    echo "install-agent: running; logs: journalctl --user -u hoover-watch; check with: hoover status, hoover doctor" ;;
esac
