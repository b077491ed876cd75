#!/usr/bin/env bash
# How long a new user's first `make demo` takes: a fresh clone, an empty uv cache (every wheel
# downloaded), from the command until the server answers. Prints the CPU, the commit, the run's
# step lines (with the demo's own clock), and the total; then stops the server. The whole output
# stays in DEST/first-run.log.
#
#   benchmarks/first_demo_run.sh [REPO] [DEST]    (defaults: this checkout; a new temp dir)
#
# Port 7860 must be free. The Tux Paint .deb comes from apt's cache if an earlier run left it
# there (as on the project's build VM); a machine that never fetched it downloads it too.
set -euo pipefail
repo=${1:-$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)}
dest=${2:-$(mktemp -d)/spaner}
cache=$(mktemp -d)
git clone -q "$repo" "$dest"
cd "$dest"
echo "CPU: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1); commit $(git rev-parse --short HEAD)"
log="$dest/first-run.log"
start=$(date +%s.%N)
# a session of its own, so that the server can be stopped with everything make started
setsid bash -c "UV_CACHE_DIR='$cache' make demo" > "$log" 2>&1 &
leader=$!
stop() { kill -- "-$leader" 2>/dev/null || true; rm -rf "$cache"; }
trap stop EXIT
until grep -q "SPANER demo ready" "$log" 2>/dev/null; do
  if ! kill -0 "$leader" 2>/dev/null; then
    echo "make demo ended before the server was ready:" >&2
    tail -20 "$log" >&2
    exit 1
  fi
  sleep 0.2
done
end=$(date +%s.%N)
# the steps as the run printed them (progress bars left out)
grep -v "it/s\]$" "$log" | grep -E "installing|touch|building|tuxpaint:|encoding [0-9]+ |data:|trained|ready" || true
awk -v s="$start" -v e="$end" 'BEGIN { printf "first run: %.0f s until the server answered\n", e - s }'
