#!/usr/bin/env bash
# Render an audit report.html in headless Chromium and save screenshots for a person to look at.
#
# Usage: tests/bench/render_report.sh REPORT_HTML [OUT_PNG] [WIDTH]
#   REPORT_HTML  the report page (e.g. audit/report.html)
#   OUT_PNG      the full-page screenshot to write (default: report.png beside the page)
#   WIDTH        browser window width in pixels (default 1280; try 800 for a narrow screen)
# Environment: TILE_HEIGHT=N also writes OUT_PNG's stem + _00.png, _01.png, ... slices N pixels
# high, which are easier to read than one very tall image; OPEN_DETAILS=1 renders a copy of the
# page with every collapsed <details> section opened, to check what they hold.
# Needs Debian's chromium package (apt-get install chromium). The page must load nothing from
# the network, so the browser runs behind a dead proxy: anything that then fails to show means
# the page is not self-contained.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 3 ]]; then
  sed -n '2,14p' "$0" >&2
  exit 2
fi
[[ -f "$1" ]] || { echo "no such file: $1" >&2; exit 2; }
html=$(realpath "$1")
out=$(realpath -m "${2:-$(dirname "$html")/report.png}")
width=${3:-1280}
mkdir -p "$(dirname "$out")"

browser=""
for candidate in chromium chromium-browser google-chrome; do
  if command -v "$candidate" >/dev/null 2>&1; then browser=$candidate; break; fi
done
[[ -n "$browser" ]] || { echo "chromium not found: apt-get install chromium" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -n "${OPEN_DETAILS:-}" ]]; then  # a copy (the page is self-contained: it may move)
  opened="$work/opened.html"
  { cat "$html"
    echo "<script>document.querySelectorAll('details').forEach(d => d.open = true)</script>"
  } > "$opened"
  html=$opened
fi
run() {  # run URL EXTRA-ARGS...: one headless Chromium call, offline
  local url=$1; shift
  # --no-sandbox: needed when running as root (containers, CI); the page is a local file.
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --user-data-dir="$work/profile" --proxy-server="127.0.0.1:9" \
    --proxy-bypass-list="<-loopback>" "$@" "$url" 2>>"$work/stderr.log"
}

# 1. Measure the page's height at this width (on a copy with one measuring line added).
{ cat "$html"
  echo "<script>document.body.insertAdjacentHTML('beforeend','<pre id=\"render-height\">'"
  echo "+document.documentElement.scrollHeight+'</pre>')</script>"; } > "$work/measure.html"
height=$(run "file://$work/measure.html" --window-size="$width,1000" --dump-dom \
  | grep -o 'id="render-height">[0-9]*' | grep -o '[0-9]*$' || true)
[[ -n "$height" ]] || { echo "could not measure the page" >&2; cat "$work/stderr.log" >&2; exit 1; }
full=$height  # slices cover the whole page; one screenshot stops at 16000 px (GPU limits)
height=$(( height > 16000 ? 16000 : height ))

# 2. The whole page in one screenshot.
run "file://$html" --window-size="$width,$height" --screenshot="$out" >/dev/null
[[ -s "$out" ]] || { echo "chromium wrote no screenshot" >&2; cat "$work/stderr.log" >&2; exit 1; }
echo "screenshot: $out (${width}x${height} of ${full})"

# 3. Optional slices, shown through an iframe shifted up by each slice's offset.
if [[ -n "${TILE_HEIGHT:-}" ]]; then
  i=0
  for (( top = 0; top < full; top += TILE_HEIGHT )); do
    tile=$(printf '%s_%02d.png' "${out%.png}" "$i")
    printf '<!doctype html><body style="margin:0;overflow:hidden"><iframe src="file://%s" ' \
      "$html" > "$work/tile.html"
    printf 'scrolling="no" style="position:absolute;left:0;top:-%dpx;border:0;width:%dpx;' \
      "$top" "$width" >> "$work/tile.html"
    printf 'height:%dpx"></iframe></body>\n' "$((top + TILE_HEIGHT))" >> "$work/tile.html"
    run "file://$work/tile.html" --window-size="$width,$TILE_HEIGHT" --screenshot="$tile" \
      >/dev/null
    echo "slice: $tile"
    i=$((i + 1))
  done
fi
