#!/usr/bin/env bash
# buf breaking against main, once main has protos (the first landing has nothing to compare).
set -euo pipefail
cd "$(dirname "$0")/.."
if git rev-parse --verify -q main >/dev/null && git ls-tree -r --name-only main -- protos/amesa | grep -q '\.proto$'; then
  .venv/bin/buf breaking --against '.git#branch=main'
else
  echo "buf breaking: main has no protos yet, nothing to compare"
fi
