#!/bin/sh
# Creates placeholder sources for every package of the Cargo workspace in the current
# directory, so that only its manifests and Cargo.lock are needed to compile the
# dependencies. The Dockerfile runs it in its dependency-caching layer (real sources are
# copied over the placeholders afterwards); scripts/check-deploy.sh runs it on a copy of the
# manifests to prove the workspace loads that way.
#
# For each Cargo.toml below the root: src/lib.rs, plus every target the manifest declares
# ([lib], [[bin]], [[test]], [[bench]], [[example]]) at its `path` or Cargo's default path.
# Existing files are never touched.
set -eu

stub() { # stub FILE CONTENT
  [ -e "$1" ] && return 0
  mkdir -p "$(dirname "$1")"
  printf '%s\n' "$2" >"$1"
}

find . -name Cargo.toml -not -path ./Cargo.toml -not -path '*/target/*' | sort |
  while read -r manifest; do
    dir=$(dirname "$manifest")
    stub "$dir/src/lib.rs" ''
    # One line per declared target: KIND NAME PATH (PATH "-" when Cargo's default applies).
    awk '
      function flush() { if (kind != "") print kind, (name == "" ? "-" : name), (path == "" ? "-" : path); kind = "" }
      /^[[:space:]]*\[/ {
        flush()
        if ($0 ~ /^[[:space:]]*\[lib\]/) kind = "lib"
        else if (match($0, /^[[:space:]]*\[\[(bin|test|bench|example)\]\]/)) {
          kind = $0; gsub(/[][[:space:]]/, "", kind)
        }
        name = ""; path = ""; next
      }
      kind != "" && /^[[:space:]]*name[[:space:]]*=/ { v = $0; sub(/^[^"]*"/, "", v); sub(/".*/, "", v); name = v }
      kind != "" && /^[[:space:]]*path[[:space:]]*=/ { v = $0; sub(/^[^"]*"/, "", v); sub(/".*/, "", v); path = v }
      END { flush() }
    ' "$manifest" | while read -r kind name path; do
      if [ "$path" = - ]; then
        case "$kind" in
          lib) path=src/lib.rs ;;
          bin) path="src/bin/$name.rs" ;;
          test) path="tests/$name.rs" ;;
          bench) path="benches/$name.rs" ;;
          example) path="examples/$name.rs" ;;
        esac
      fi
      if [ "$kind" = lib ]; then stub "$dir/$path" ''; else stub "$dir/$path" 'fn main() {}'; fi
    done
  done
