#!/usr/bin/env bash
# Render a bench-runtimes report to a PNG with headless Chromium, to look at it as a user would.
#
#   bash scripts/screenshot-report.sh REPORT [OUT.png] [WIDTHxHEIGHT]
#
# REPORT is a report.html, a report.md (its report.html beside it is shot: the HTML is what a
# browser shows; the Markdown has the same content) or a result folder. Default OUT is
# REPORT's folder/report.png, default size 1400x6000 (long enough for a default run's report).
# Needs Chromium: `apt-get install -y chromium` (Debian) or set $CHROMIUM to a Chrome binary.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 REPORT [OUT.png] [WIDTHxHEIGHT]" >&2
  exit 2
fi
report="$1"
[ -d "$report" ] && report="$report/report.html"
case "$report" in
  *.md) report="${report%.md}.html" ;;
esac
if [ ! -f "$report" ]; then
  echo "error: no such report: $report" >&2
  exit 2
fi
out="${2:-$(dirname "$report")/report.png}"
size="${3:-1400x6000}"
browser="${CHROMIUM:-}"
if [ -z "$browser" ]; then
  for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null; then browser="$name"; break; fi
  done
fi
if [ -z "$browser" ]; then
  echo "error: no Chromium found: apt-get install -y chromium, or set CHROMIUM" >&2
  exit 2
fi
out_abs="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
report_abs="$(cd "$(dirname "$report")" && pwd)/$(basename "$report")"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
# A profile of its own (a second Chromium never waits on the first) and no network: the report
# is self-contained, its plots inline.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --window-size="${size/x/,}" --screenshot="$out_abs" "file://$report_abs" \
  >"$profile/log" 2>&1 || { tail -5 "$profile/log" >&2; exit 1; }
if [ ! -s "$out_abs" ]; then
  tail -5 "$profile/log" >&2
  echo "error: Chromium wrote no screenshot" >&2
  exit 1
fi
echo "wrote $out"
