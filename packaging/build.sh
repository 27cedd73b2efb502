#!/usr/bin/env bash
# Build the Weightscope app for this platform with PyInstaller: dist/Weightscope/ (one folder),
# plus dist/Weightscope.app on macOS.
#
#   packaging/build.sh                    # uses .venv if present, else creates build/venv
#   PYTHON=/path/to/python packaging/build.sh
#   packaging/build.sh --distpath /tmp/d --workpath /tmp/w   # extra arguments go to PyInstaller
#
# PyInstaller and its hooks are installed at the versions pinned in requirements-test.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then
        PYTHON=.venv/bin/python
    elif [[ -x .venv/Scripts/python.exe ]]; then
        PYTHON=.venv/Scripts/python.exe
    else
        echo "build.sh: no .venv here; creating build/venv with the runtime requirements"
        python3 -m venv build/venv
        PYTHON=build/venv/bin/python
        [[ -x "$PYTHON" ]] || PYTHON=build/venv/Scripts/python.exe
        "$PYTHON" -m pip install -q -r requirements.txt
    fi
fi

pins=$(grep -E '^(pyinstaller|pyinstaller-hooks-contrib)==' requirements-test.txt)
missing=0
for pin in $pins; do
    name=${pin%%==*}
    want=${pin##*==}
    have=$("$PYTHON" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)
    [[ "$have" == "$want" ]] || missing=1
done
if [[ $missing == 1 ]]; then
    echo "build.sh: installing $(echo $pins)"
    # shellcheck disable=SC2086
    "$PYTHON" -m pip install -q $pins
fi

DIST=dist
WORK=build/pyinstaller
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --distpath) DIST=$2; shift 2 ;;
        --workpath) WORK=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

start=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --log-level WARN --distpath "$DIST" --workpath "$WORK" \
    ${args[@]+"${args[@]}"} packaging/weightscope.spec
end=$(date +%s)

exe="$DIST/Weightscope/Weightscope"
[[ -e "$exe" ]] || exe="$DIST/Weightscope/Weightscope.exe"
size=$(du -sh "$DIST/Weightscope" | cut -f1)
echo "build.sh: built $exe in $((end - start)) s; $DIST/Weightscope is $size"
