#!/usr/bin/env bash
# Install the built app for the current user (no root): the app folder, a `weightscope` command,
# the desktop entry, the icons, and the checkpoint MIME types, so that double-clicking a
# .safetensors / .gguf / .pt / .pth / .ckpt file opens Weightscope.
#
#   packaging/build.sh && packaging/linux/install.sh            # installs dist/Weightscope
#   packaging/linux/install.sh /path/to/Weightscope             # installs that app folder
#   packaging/linux/install.sh --uninstall
#
# Writes under $XDG_DATA_HOME (default ~/.local/share) and ~/.local/bin only. Needs xdg-mime
# (xdg-utils) and update-desktop-database (desktop-file-utils); if either is missing it says so
# and writes nothing. Tool names can be overridden with XDG_MIME= and UPDATE_DESKTOP_DATABASE=.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
BIN="${WEIGHTSCOPE_BIN_DIR:-$HOME/.local/bin}"
APP_DEST="$DATA/weightscope/app"
XDG_MIME="${XDG_MIME:-xdg-mime}"
UPDATE_DESKTOP_DATABASE="${UPDATE_DESKTOP_DATABASE:-update-desktop-database}"
MIME_TYPES="application/x-safetensors application/x-gguf application/x-pytorch"
ICON_SIZES="16 24 32 48 64 128 256 512"

missing=()
command -v "$XDG_MIME" >/dev/null 2>&1 || missing+=("xdg-mime (Debian/Ubuntu package xdg-utils)")
command -v "$UPDATE_DESKTOP_DATABASE" >/dev/null 2>&1 \
    || missing+=("update-desktop-database (package desktop-file-utils)")
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "install.sh: nothing was installed; missing tool(s):" >&2
    printf '  %s\n' "${missing[@]}" >&2
    echo "Install them (e.g. sudo apt-get install xdg-utils desktop-file-utils) and run this again," >&2
    echo "or run the app directly: dist/Weightscope/Weightscope" >&2
    exit 1
fi

if [[ "${1:-}" == "--uninstall" ]]; then
    "$XDG_MIME" uninstall --mode user "$HERE/weightscope-mime.xml" || true
    rm -f "$DATA/applications/weightscope.desktop" "$BIN/weightscope"
    for size in $ICON_SIZES; do rm -f "$DATA/icons/hicolor/${size}x${size}/apps/weightscope.png"; done
    rm -rf "$DATA/weightscope"
    "$UPDATE_DESKTOP_DATABASE" "$DATA/applications" || true
    echo "install.sh: Weightscope removed"
    exit 0
fi

SRC="${1:-$ROOT/dist/Weightscope}"
if [[ ! -x "$SRC/Weightscope" ]]; then
    echo "install.sh: nothing was installed; no app at $SRC (build it first: packaging/build.sh)" >&2
    exit 1
fi
SRC="$(cd "$SRC" && pwd)"

mkdir -p "$DATA/weightscope" "$DATA/applications" "$BIN"
if [[ "$SRC" != "$APP_DEST" ]]; then
    rm -rf "$APP_DEST.new"
    cp -a "$SRC" "$APP_DEST.new"
    rm -rf "$APP_DEST"
    mv "$APP_DEST.new" "$APP_DEST"
fi
ln -sfn "$APP_DEST/Weightscope" "$BIN/weightscope"

for size in $ICON_SIZES; do
    mkdir -p "$DATA/icons/hicolor/${size}x${size}/apps"
    cp "$ROOT/resources/icons/weightscope-$size.png" "$DATA/icons/hicolor/${size}x${size}/apps/weightscope.png"
done

# The desktop session may not have ~/.local/bin on PATH: point Exec at the app itself.
sed -e "s|^Exec=.*|Exec=\"$APP_DEST/Weightscope\" %F|" -e "s|^TryExec=.*|TryExec=$APP_DEST/Weightscope|" \
    "$HERE/weightscope.desktop" > "$DATA/applications/weightscope.desktop"

"$XDG_MIME" install --mode user --novendor "$HERE/weightscope-mime.xml"
# shellcheck disable=SC2086
"$XDG_MIME" default weightscope.desktop $MIME_TYPES
"$UPDATE_DESKTOP_DATABASE" "$DATA/applications"
if command -v gtk-update-icon-cache >/dev/null 2>&1; then
    gtk-update-icon-cache -q -t "$DATA/icons/hicolor" || true
fi

echo "install.sh: installed Weightscope to $APP_DEST"
echo "  command:       $BIN/weightscope"
echo "  desktop entry: $DATA/applications/weightscope.desktop"
echo "  file types:    $MIME_TYPES"
