#!/usr/bin/env bash
# Regenerates the TypeScript for every .proto under proto/.
#
#   bash proto/generate.sh [OUT_DIR]     (default: proto/gen)
#
# Installs the pinned codegen tools into tools/ on first use (npm registry),
# because @bufbuild/buf's platform packages must stay out of the root
# package.json. OUT_DIR is wiped and rewritten, so the staleness test can
# generate into a temp dir and compare it with proto/gen.
set -euo pipefail

proto_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root_dir="$(dirname "$proto_dir")"
tools_dir="$root_dir/tools"
out_dir="${1:-$proto_dir/gen}"

buf="$tools_dir/node_modules/.bin/buf"
plugin="$tools_dir/node_modules/.bin/protoc-gen-ts_proto"

if [[ ! -x "$buf" || ! -x "$plugin" ]]; then
  echo "generate.sh: installing codegen tools into $tools_dir" >&2
  # Not `npm ci`: the lock can only list the platform builds of buf that the
  # registry served when it was written, and `npm ci` rejects such a lock.
  # --no-save keeps the committed lock untouched; its versions still apply.
  # --ignore-scripts: buf's postinstall only optimises the launcher.
  npm install --prefix "$tools_dir" --no-save --no-audit --no-fund --ignore-scripts >&2
fi

mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"
# Only ever wipe generated TypeScript, never whatever else a caller points at.
find "$out_dir" -type f -name '*.ts' -delete
find "$out_dir" -mindepth 1 -type d -empty -delete

# Options: grpc-js service definitions and clients; bigint for 64-bit
# integers (uint64 instance ids, sizes and DMIPS exceed 2^53); explicit .ts
# import suffixes for Deno; oneofs as discriminated unions.
opts="outputServices=grpc-js,esModuleInterop=true,importSuffix=.ts,forceLong=bigint,oneof=unions"

template=$(cat <<JSON
{"version":"v2","plugins":[{"local":"$plugin","out":"$out_dir","opt":"$opts"}]}
JSON
)

cd "$proto_dir"
"$buf" generate --template "$template"
