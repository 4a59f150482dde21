#!/usr/bin/env bash
# The include graph of core/ has no cycles, between modules or between files.
# A module may include its own headers and those of lower modules; a cycle
# (disk -> session -> disk, or a.h -> b.h -> a.h) means a seam is in the wrong
# place. Prints the module graph; exits 1 on a cycle (tsort finds it).
#
#   bash tests/core/include_graph.sh [source dir]
set -euo pipefail
src=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src/core"

files=$(find . -name '*.h' -o -name '*.cpp' | sed 's|^\./||' | sort)
module_edges=$(mktemp)
file_edges=$(mktemp)
trap 'rm -f "$module_edges" "$file_edges"' EXIT

for f in $files; do
  from_module=${f%%/*}
  # #include "module/header.h" (core's own headers only)
  { grep -oE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"[a-z_]+/[A-Za-z0-9_./]+"' "$f" || true; } |
    sed -E 's/.*"([^"]+)".*/\1/' | while read -r inc; do
      [ -e "$inc" ] || continue # generated headers (util/version.h)
      to_module=${inc%%/*}
      echo "$f $inc" >>"$file_edges"
      [ "$from_module" != "$to_module" ] && echo "$from_module $to_module" >>"$module_edges"
      true
    done
done

status=0
echo "module -> modules it includes:"
sort -u "$module_edges" | awk '{a[$1]=a[$1]" "$2} END {for (m in a) print "  " m ":" a[m]}' | sort
if ! sort -u "$module_edges" | tsort >/dev/null 2>"$module_edges.err"; then
  echo "CYCLE between modules:"; head -20 "$module_edges.err"; status=1
fi
if ! sort -u "$file_edges" | tsort >/dev/null 2>"$file_edges.err"; then
  echo "CYCLE between files:"; head -20 "$file_edges.err"; status=1
fi
rm -f "$module_edges.err" "$file_edges.err"
[ $status -eq 0 ] && echo "no cycles ($(echo "$files" | wc -l) files)"
exit $status
