#!/usr/bin/env bash
# Rebuilds the browser interface of `bedside annotate serve` (web/annotate: Vite, TypeScript,
# Cornerstone3D) into crates/bedside-annotate/web-dist, which is committed and embedded in the
# binary at compile time, so cargo builds need no Node. Run it after changing web/annotate and
# commit the result; tests/python/test_annotate_web.py checks that the committed bundle was built
# from the current sources (web-dist/SOURCE-HASH).
set -euo pipefail
cd "$(dirname "$0")/../web/annotate"

# The hash of the sources the bundle is built from (sha256sum lines, sorted by path).
source_hash() {
  { printf '%s\n' package.json package-lock.json index.html vite.config.ts tsconfig.json
    find src -type f; } | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1
}

if [ "${1:-}" = "--hash" ]; then
  source_hash
  exit 0
fi

npm ci --no-audit --no-fund
npm run build
source_hash > ../../crates/bedside-annotate/web-dist/SOURCE-HASH
du -sh ../../crates/bedside-annotate/web-dist
