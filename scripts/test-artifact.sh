#!/usr/bin/env bash
# Prints the path of one artifact of the workspace's test build — the build `scripts/test.sh`
# runs its Rust tests with — building it only when it is not fresh. Steps that need a binary after
# the Rust tests use this instead of `cargo build -p X` / `cargo run -p X`, whose different
# feature unification would recompile the dependency tree (minutes of the CI budget).
#   scripts/test-artifact.sh example backup_verify_restore
#   scripts/test-artifact.sh cdylib backup_ffi
set -euo pipefail
cd "$(dirname "$0")/.."
kind=$1 name=$2
# Keep in step with the "rust tests" step of scripts/test.sh.
cargo test --workspace --locked --features backup-ffi/test-panic --no-run --message-format=json |
  python3 -c '
import json, sys
kind, name = sys.argv[1], sys.argv[2]
found = None
# Read to the end: leaving early breaks the pipe cargo writes to (exit 101 under pipefail).
for line in sys.stdin:
    m = json.loads(line)
    if found or m.get("reason") != "compiler-artifact" or m["target"]["name"] != name or kind not in m["target"]["kind"]:
        continue
    if kind == "cdylib":
        paths = [f for f in m["filenames"] if f.endswith((".so", ".dylib"))]
    else:
        paths = [m["executable"]] if m.get("executable") else []
    if paths:
        found = paths[0]
if not found:
    sys.exit(f"no {kind} artifact named {name} in the workspace test build")
print(found)
' "$kind" "$name"
