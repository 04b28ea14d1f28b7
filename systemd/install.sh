#!/usr/bin/env bash
# Install (or uninstall) an rftwin service on this machine, idempotently.
#
#   systemd/install.sh [options] node|central
#   systemd/install.sh [options] uninstall node|central [--purge]
#
# Install: system user and group rftwin (plugdev for the node's USB SDRs), a venv under
# /opt/rftwin/venv (node: only the node extras; never torch, sionna or scikit-learn), the config under
# /etc/rftwin from a template (never overwritten), the unit under /etc/systemd/system, the udev rule
# for USB SDRs (node), commands in /usr/local/bin; then `systemctl daemon-reload` and `enable --now`
# when installing into / on a machine that runs systemd (else it prints what it would run).
# A second run changes nothing and says so.
#
# Uninstall: stops and disables the service, removes its unit, udev rule and commands (and the venv
# once no rftwin service is left); keeps config and state unless --purge. The user is kept.
#
# Options:
#   --prefix ROOT   install into ROOT instead of / (an image, a test); no systemctl, no udevadm
#   --from SRC      the rftwin source tree to install (default: the tree this script is in)
#   --extras LIST   pip extras (default: node for node, central for central; e.g. node,pluto for a
#                   Pluto, central,train to train models on the box: torch then comes first, CPU
#                   wheel from the local wheel directory)
#   --python PY     interpreter for the venv (default: /usr/bin/python3; must be 3.11, not under
#                   /home or /root: the service runs with ProtectHome=yes)
#   --wheels DIR    local wheel directory for pip --find-links (default: $PIP_FIND_LINKS or /opt/wheels)
#   --no-venv       leave the venv alone (no venv, no pip)
#   --no-user       do not create the user and group
#   --dry-run       print every change instead of making it
#   --purge         (uninstall) also delete config, state and cache of that service
set -euo pipefail

PROG=${0##*/}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
USER_NAME=rftwin
TORCH=torch==2.13.0

ROOT=/
SRC=$(dirname "$HERE")
EXTRAS=
PY=/usr/bin/python3
WHEELS=${PIP_FIND_LINKS:-/opt/wheels}
NO_VENV=0
NO_USER=0
DRY=0
PURGE=0
ACTION=install
ROLE=

die() { echo "$PROG: error: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case $1 in
    --prefix) ROOT=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) ROOT=${1#*=}; shift ;;
    --from) SRC=${2:?--from needs a directory}; shift 2 ;;
    --from=*) SRC=${1#*=}; shift ;;
    --extras) EXTRAS=${2:?--extras needs a list}; shift 2 ;;
    --extras=*) EXTRAS=${1#*=}; shift ;;
    --python) PY=${2:?--python needs an interpreter}; shift 2 ;;
    --python=*) PY=${1#*=}; shift ;;
    --wheels) WHEELS=${2:?--wheels needs a directory}; shift 2 ;;
    --wheels=*) WHEELS=${1#*=}; shift ;;
    --no-venv) NO_VENV=1; shift ;;
    --no-user) NO_USER=1; shift ;;
    --dry-run) DRY=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage 0 ;;
    uninstall) ACTION=uninstall; shift ;;
    node|central) [ -z "$ROLE" ] || die "one service at a time"; ROLE=$1; shift ;;
    *) echo "$PROG: unknown argument: $1" >&2; usage 2 >&2 ;;
  esac
done
[ -n "$ROLE" ] || { echo "$PROG: say which service: node or central" >&2; usage 2 >&2; }
[ "$PURGE" = 0 ] || [ "$ACTION" = uninstall ] || die "--purge goes with uninstall"
[ -d "$ROOT" ] || die "--prefix $ROOT: no such directory"
ROOT=$(cd "$ROOT" && pwd)
R=${ROOT%/}  # "" for /, so "$R/etc" is /etc
SRC=$(cd "$SRC" 2>/dev/null && pwd) || die "--from: no such directory"
[ -n "$EXTRAS" ] || EXTRAS=$ROLE
OTHER=$([ "$ROLE" = node ] && echo central || echo node)

UNIT=rftwin-$ROLE.service
UNIT_DIR=$R/etc/systemd/system
CONF_DIR=$R/etc/rftwin
CONF=$CONF_DIR/$ROLE.toml
STATE_DIR=$R/var/lib/rftwin/$ROLE
CACHE_DIR=$R/var/cache/rftwin/$ROLE
VENV=$R/opt/rftwin/venv
UDEV_RULE=$R/etc/udev/rules.d/90-rftwin-sdr.rules
BIN_DIR=$R/usr/local/bin
COMMANDS=$([ "$ROLE" = node ] && echo rftwin-node || echo "rftwin-central rftwin-calibrate")

CHANGES=0
say() { echo "$PROG: $*"; }
# Every change goes through act: it counts, and under --dry-run it only prints.
act() {
  CHANGES=$((CHANGES + 1))
  if [ "$DRY" = 1 ]; then echo "[dry-run] would run: $*"; else echo "+ $*"; "$@"; fi
}
systemd_here() { [ "$ROOT" = / ] && [ -d /run/systemd/system ]; }
installed() { [ -e "$UNIT_DIR/rftwin-$1.service" ]; }

# ------------------------------------------------------------------------------ user and group
group_exists() {
  if [ "$ROOT" = / ]; then getent group "$1" >/dev/null; else grep -q "^$1:" "$R/etc/group" 2>/dev/null; fi
}
user_exists() {
  if [ "$ROOT" = / ]; then getent passwd "$1" >/dev/null; else grep -q "^$1:" "$R/etc/passwd" 2>/dev/null; fi
}
gid_of() {  # numeric gid in the target's /etc/group (chown by name would read the host's)
  if [ "$ROOT" = / ]; then getent group "$1" | cut -d: -f3; else awk -F: -v g="$1" '$1 == g {print $3}' "$R/etc/group" 2>/dev/null; fi
}
uid_of() {
  if [ "$ROOT" = / ]; then getent passwd "$1" | cut -d: -f3; else awk -F: -v u="$1" '$1 == u {print $3}' "$R/etc/passwd" 2>/dev/null; fi
}

ensure_user() {
  if [ "$NO_USER" = 1 ]; then say "user: skipped (--no-user)"; return; fi
  local root_opt=()
  if [ "$ROOT" != / ]; then
    if [ ! -f "$R/etc/passwd" ] || [ ! -f "$R/etc/group" ]; then
      say "user: skipped ($ROOT has no etc/passwd; create it on the target: useradd --system $USER_NAME)"
      return
    fi
    root_opt=(--root "$ROOT")
  fi
  if ! group_exists "$USER_NAME"; then act groupadd "${root_opt[@]}" --system "$USER_NAME"; fi
  if ! user_exists "$USER_NAME"; then
    act useradd "${root_opt[@]}" --system --gid "$USER_NAME" --home-dir /var/lib/rftwin --no-create-home \
      --shell /usr/sbin/nologin --comment "rftwin services" "$USER_NAME"
  fi
  # The node's unit adds plugdev (SupplementaryGroups=): the group must exist for the udev rule.
  if [ "$ROLE" = node ] && ! group_exists plugdev; then act groupadd "${root_opt[@]}" --system plugdev; fi
}

# ----------------------------------------------------------------------------- files and dirs
# ensure_dir PATH MODE OWNER GROUP (owner/group by name in the target; left as is when unknown)
ensure_dir() {
  local path=$1 mode=$2 uid gid
  uid=$(uid_of "$3" || true); gid=$(gid_of "$4" || true)
  [ "$3" != root ] || uid=0
  [ "$4" != root ] || gid=0
  if [ ! -d "$path" ]; then act install -d -m "$mode" "$path"; fi
  if [ "$DRY" = 1 ] && [ ! -d "$path" ]; then return; fi
  if [ "$(stat -c %a "$path")" != "${mode#0}" ]; then act chmod "$mode" "$path"; fi
  if [ -n "$uid" ] && [ -n "$gid" ] && [ "$(stat -c %u:%g "$path")" != "$uid:$gid" ]; then act chown "$uid:$gid" "$path"; fi
}

# ensure_file SRC DEST MODE GROUP [keep]: copy when missing or different (keep: only when missing).
# Sets CHANGED=1 when it copied. (Results go through globals, not return codes: a function called as
# an `if` condition runs without `set -e`, and a failing command inside must still stop the script.)
ensure_file() {
  local src=$1 dest=$2 mode=$3 group=$4 keep=${5:-} gid
  CHANGED=0
  gid=$(gid_of "$group" || true)
  [ "$group" != root ] || gid=0
  if [ -e "$dest" ]; then
    if [ "$keep" = keep ]; then say "kept $dest (an existing config is never overwritten)"; return; fi
    if cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then return; fi
  fi
  CHANGED=1
  if [ -n "$gid" ]; then
    act install -m "$mode" -o 0 -g "$gid" "$src" "$dest"
  else
    act install -m "$mode" "$src" "$dest"
    say "note: group $group unknown in $ROOT: $dest left root-owned (the service could not read it)"
  fi
}

ensure_link() {  # ensure_link TARGET LINK
  if [ "$(readlink "$2" 2>/dev/null || true)" != "$1" ]; then act ln -sfn "$1" "$2"; fi
}

# ------------------------------------------------------------------------------------- the venv
src_digest() {  # what pip would install: the packages and the project metadata
  (cd "$SRC" && find pyproject.toml contracts node central calibration models evaluation sim -type f \
    \( -name '*.py' -o -name '*.toml' -o -name '*.js' -o -name '*.html' -o -name '*.css' \) 2>/dev/null \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
}

ensure_venv() {  # sets CHANGED=1 when it installed something
  CHANGED=0
  if [ "$NO_VENV" = 1 ]; then say "venv: skipped (--no-venv)"; return; fi
  case $(readlink -f "$PY" 2>/dev/null || echo "$PY") in
    /home/*|/root/*|/run/user/*) die "--python $PY lives under /home, /root or /run/user: the service (ProtectHome=yes) could not run it" ;;
  esac
  [ -x "$PY" ] || die "--python $PY: not an executable"
  "$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null || die "--python $PY: rftwin needs Python 3.11"
  local stamp=$VENV/.rftwin-$ROLE want find_links=()
  want="extras=$EXTRAS src=$(src_digest)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
    say "venv $VENV: up to date ($EXTRAS)"
    return
  fi
  CHANGED=1
  [ -d "$WHEELS" ] && find_links=(--find-links "$WHEELS")
  [ -x "$VENV/bin/python" ] || act "$PY" -m venv "$VENV"
  case ",$EXTRAS," in
    *,train,*) act "$VENV/bin/pip" install -q "${find_links[@]}" "$TORCH" ;;  # before anything that needs it
  esac
  act "$VENV/bin/pip" install -q "${find_links[@]}" "${SRC}[$EXTRAS]"
  act "$VENV/bin/pip" install -q --no-deps --force-reinstall "$SRC"  # this tree's code, same version or not
  if [ "$ROLE" = node ] && ! installed central && [ "$DRY" = 0 ]; then
    # docs/architecture.md: a node install must not pull sionna, torch or scikit-learn.
    "$VENV/bin/python" -c 'import importlib.util as u, sys
bad = [m for m in ("torch", "sionna", "sklearn") if u.find_spec(m)]
sys.exit(f"node venv contains {bad}: a node install must not pull them" if bad else 0)'
  fi
  if [ "$DRY" = 1 ]; then echo "[dry-run] would write $stamp"; else echo "$want" > "$stamp"; fi
}

# ---------------------------------------------------------------------------------------- install
do_install() {
  [ "$DRY" = 1 ] || [ "$(id -u)" = 0 ] || [ "$ROOT" != / ] || die "installing into / needs root (or --dry-run)"
  say "installing the $ROLE service into $ROOT from $SRC$([ "$DRY" = 1 ] && echo ' (dry run)')"
  ensure_user
  ensure_dir "$R/etc" 0755 root root
  ensure_dir "$CONF_DIR" 0750 root "$USER_NAME"
  ensure_dir "$R/var/lib/rftwin" 0755 root root
  ensure_dir "$STATE_DIR" 0750 "$USER_NAME" "$USER_NAME"
  if [ "$ROLE" = central ]; then
    ensure_dir "$R/var/cache/rftwin" 0755 root root
    ensure_dir "$CACHE_DIR" 0750 "$USER_NAME" "$USER_NAME"
  fi
  local fresh_config unit_changed code_changed
  ensure_file "$HERE/$ROLE.toml.example" "$CONF" 0640 "$USER_NAME" keep
  fresh_config=$CHANGED
  ensure_dir "$UNIT_DIR" 0755 root root
  ensure_file "$HERE/$UNIT" "$UNIT_DIR/$UNIT" 0644 root
  unit_changed=$CHANGED
  if [ "$ROLE" = node ]; then
    ensure_dir "$R/etc/udev/rules.d" 0755 root root
    ensure_file "$HERE/90-rftwin-sdr.rules" "$UDEV_RULE" 0644 root
    if [ "$CHANGED" = 1 ] && [ "$ROOT" = / ] && command -v udevadm >/dev/null && [ -S /run/udev/control ]; then
      act udevadm control --reload
      act udevadm trigger --subsystem-match=usb --action=change
    fi
  fi
  ensure_dir "$R/opt/rftwin" 0755 root root
  ensure_file "$HERE/README.md" "$R/opt/rftwin/README.md" 0644 root  # the units' Documentation=
  ensure_venv
  code_changed=$CHANGED
  ensure_dir "$BIN_DIR" 0755 root root
  for c in $COMMANDS; do ensure_link "/opt/rftwin/venv/bin/$c" "$BIN_DIR/$c"; done

  if systemd_here; then
    [ "$unit_changed" = 0 ] || act systemctl daemon-reload
    systemctl is-enabled --quiet "$UNIT" 2>/dev/null || act systemctl enable "$UNIT"
    if [ "$fresh_config" = 1 ]; then
      say "edit $CONF (the lines marked EDIT), then: systemctl start $UNIT"
    elif ! systemctl is-active --quiet "$UNIT"; then
      act systemctl start "$UNIT"
    elif [ "$unit_changed" = 1 ] || [ "$code_changed" = 1 ]; then
      act systemctl restart "$UNIT"
    fi
  else
    if [ "$ROOT" != / ]; then say "installed under --prefix $ROOT: on the target, run"
    else say "systemd is not running here: once it is, run"; fi
    say "  systemctl daemon-reload && systemctl enable --now $UNIT"
  fi
  if [ "$CHANGES" = 0 ]; then
    say "nothing to do: the $ROLE service is already installed and up to date"
  else
    say "$([ "$DRY" = 1 ] && echo "would make" || echo made) $CHANGES change(s)"
    [ "$fresh_config" = 0 ] || say "next: edit $CONF; check it with: sudo -u $USER_NAME /opt/rftwin/venv/bin/rftwin-$ROLE $([ "$ROLE" = node ] && echo check || echo status) --config /etc/rftwin/$ROLE.toml"
    [ "$ROLE" != central ] || say "tip: trace the twin once before the first start (minutes): sudo -u $USER_NAME env RFTWIN_CACHE_DIR=/var/cache/rftwin/central /opt/rftwin/venv/bin/rftwin-central twin build --site <site>"
  fi
}

# -------------------------------------------------------------------------------------- uninstall
remove() {  # remove PATH...: only what exists
  local p
  for p in "$@"; do if [ -e "$p" ] || [ -L "$p" ]; then act rm -rf -- "$p"; fi; done
}

do_uninstall() {
  [ "$DRY" = 1 ] || [ "$(id -u)" = 0 ] || [ "$ROOT" != / ] || die "uninstalling from / needs root (or --dry-run)"
  say "uninstalling the $ROLE service from $ROOT$([ "$PURGE" = 1 ] && echo ', with its config and data (--purge)')"
  if systemd_here && installed "$ROLE"; then act systemctl disable --now "$UNIT"; fi
  local had_unit=0
  installed "$ROLE" && had_unit=1
  remove "$UNIT_DIR/$UNIT"
  if [ "$had_unit" = 1 ] && systemd_here; then act systemctl daemon-reload; fi
  [ "$ROLE" != node ] || remove "$UDEV_RULE"
  for c in $COMMANDS; do remove "$BIN_DIR/$c"; done
  remove "$VENV/.rftwin-$ROLE"
  if ! installed "$OTHER"; then remove "$R/opt/rftwin"; fi  # the venv is shared by both services
  if [ "$PURGE" = 1 ]; then
    remove "$CONF" "$STATE_DIR" "$CACHE_DIR"
    [ "$ROLE" != node ] || remove "$CONF_DIR/node.token"
    say "user $USER_NAME kept (userdel $USER_NAME removes it once no rftwin service is left)"
  else
    say "kept $CONF and $STATE_DIR (--purge deletes them)"
  fi
  if [ "$CHANGES" = 0 ]; then say "nothing to do: the $ROLE service is not installed"; else say "$([ "$DRY" = 1 ] && echo "would make" || echo made) $CHANGES change(s)"; fi
}

case $ACTION in
  install) do_install ;;
  uninstall) do_uninstall ;;
esac
