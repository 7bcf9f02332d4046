#!/usr/bin/env bash
# From a fresh clone to the first result, timed: the README's three commands (git clone,
# scripts/run setup, localcompute run algo.py --input data.csv) in a temporary folder,
# removed at the end.
#
#   bench/first_result.sh [REPO]    REPO: what to clone (default: this checkout's HEAD)
#
# Docker and the images already on this host are used as they are, so on a host that
# has the helper image the figure is the venv plus the run; a host without them adds
# building the helper image (and, with no registry, the debootstrapped base: minutes).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source=${1:-$here}
work=$(mktemp -d "${TMPDIR:-/tmp}/first-result.XXXXXX")
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

start=$(now)
git clone -q "$source" "$work/localcompute"
cloned=$(now)
(cd "$work/localcompute" && scripts/run setup)
set_up=$(now)

# The algorithm and its one-line CSV, as a newcomer would write them.
printf 'a,b\n' >"$work/data.csv"
cat >"$work/algo.py" <<'EOF'
import glob

lines = 0
for path in glob.glob("/data/inputs/*/0"):
    with open(path) as f:
        lines += sum(1 for _ in f)
with open("/data/outputs/lines.txt", "w") as out:
    out.write(f"{lines}\n")
print("lines:", lines)
EOF
(cd "$work" && localcompute/.venv/bin/localcompute run algo.py --input data.csv --out results)
ran=$(now)

[ "$(cat "$work/results/lines.txt")" = 1 ] || {
    echo "first_result: the run gave no lines.txt of 1" >&2
    exit 1
}
echo "first result: clone $(seconds "$start" "$cloned") s, setup $(seconds "$cloned" "$set_up") s," \
    "run $(seconds "$set_up" "$ran") s; total $(seconds "$start" "$ran") s"
