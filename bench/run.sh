#!/usr/bin/env bash
# make bench: P1, P2, P4–P11 side by side in one run (needs root, nginx, wrk, tshark).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-test-deps.sh
exec "${GO:-go}" run ./bench --bin bin/sightline "$@"
