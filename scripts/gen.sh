#!/usr/bin/env bash
# Regenerates gen/ from protos/: Python messages + gRPC stubs + .pyi, the descriptor set Envoy
# transcodes with, and the TypeScript (Connect-ES) SDK sources.
#   scripts/gen.sh          write into gen/
#   scripts/gen.sh --check  generate into a temporary directory and fail if gen/ differs
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/.venv/bin

out=$root/gen
if [[ "${1:-}" == "--check" ]]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi

# Our own protos plus protovalidate; google/api and google/rpc come from googleapis-common-protos
# at run time and must not be shadowed by generated copies.
mapfile -t ours < <(cd protos && find amesa buf -name '*.proto' | LC_ALL=C sort)
wkt=$("$bin/python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')

rm -rf "$out/python" "$out/ts" "$out/descriptor.binpb"
mkdir -p "$out/python" "$out/ts"
(cd protos && "$bin/python" -m grpc_tools.protoc -I. -I"$wkt" \
  --plugin=protoc-gen-mypy="$bin/protoc-gen-mypy" --plugin=protoc-gen-mypy_grpc="$bin/protoc-gen-mypy_grpc" \
  --python_out="$out/python" --grpc_python_out="$out/python" \
  --mypy_out="$out/python" --mypy_grpc_out="$out/python" \
  "${ours[@]}" 2> >(grep -v '^Writing mypy to' >&2))
# Packages need __init__.py so mypy and importlib see regular packages.
find "$out/python" -type d -exec sh -c 'touch "$1/__init__.py"' _ {} \;

(cd protos && "$bin/python" -m grpc_tools.protoc -I. -I"$wkt" --include_imports \
  --descriptor_set_out="$out/descriptor.binpb" \
  "${ours[@]}" google/rpc/status.proto google/rpc/error_details.proto)

# Type stubs for the google/api and google/rpc modules that googleapis-common-protos ships
# without them, so mypy --strict checks our use of ErrorInfo, BadRequest, Status and http rules.
rm -rf "$out/typings" && mkdir -p "$out/typings"
(cd protos && "$bin/python" -m grpc_tools.protoc -I. -I"$wkt" \
  --plugin=protoc-gen-mypy="$bin/protoc-gen-mypy" --mypy_out="$out/typings" \
  google/rpc/status.proto google/rpc/error_details.proto \
  google/api/annotations.proto google/api/http.proto google/api/httpbody.proto \
  2> >(grep -v '^Writing mypy to' >&2))

# TypeScript: Connect-ES through buf with the locally installed protoc-gen-es plugin.
ts=clients/typescript
if [[ ! -x $ts/node_modules/.bin/protoc-gen-es ]]; then
  (cd $ts && npm ci --silent --no-audit --no-fund)
fi
PATH="$root/$ts/node_modules/.bin:$PATH" "$bin/buf" generate --template buf.gen.yaml -o "$out"

if [[ "$out" != "$root/gen" ]]; then
  if ! diff -r -x __pycache__ gen "$out" >/dev/null; then
    diff -r -x __pycache__ gen "$out" | head -40
    echo "gen/ is stale: run 'make gen' and commit the result" >&2
    exit 1
  fi
  echo "gen/ is up to date"
fi
