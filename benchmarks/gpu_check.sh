#!/usr/bin/env bash
# The GPU checks of mjexp as one offline run on a bare CUDA machine that has python3 with torch,
# lightning, transformers and timm (a lent device; see BENCHMARKS.md, "GPU"):
#
#   make gpu-bundle                             # here, with internet: the missing wheels -> .whl/
#   bash benchmarks/gpu_check.sh                # there: CUDA tests, then the GPU benchmark plan
#   bash benchmarks/gpu_check.sh --smoke        # seconds (also on a CPU): checks this script
#
# Results go to $OUT (or /tmp/mjexp-gpu-check): nvidia-smi.txt, gpu-tests.log, benchmarks.log and
# BENCHMARKS.md (this repository's, with one section appended per suite). Each suite is its own
# process that appends when it ends, so a run cut short keeps the suites that finished.
set -uo pipefail

out=${OUT:-/tmp/mjexp-gpu-check}
mkdir -p "$out"
site=/tmp/mjexp-gpu-site
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || { echo "could not install the wheels of .whl/ (make gpu-bundle)"; exit 1; }
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "no .whl/ folder: using the packages python3 already has (make gpu-bundle makes one)"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

{ nvidia-smi || echo "nvidia-smi: not available"; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
  2>&1 | tee "$out/nvidia-smi.txt"

status=0
# The CUDA-only tests (the `gpu` marker); on a machine without CUDA they report as skipped.
python3 -m pytest -q -p no:cacheprovider -m gpu tests/unit/sampling/test_runtime.py \
  tests/reliability/test_resume_state.py 2>&1 | tee "$out/gpu-tests.log" || status=1

cp BENCHMARKS.md "$out/BENCHMARKS.md"
for suite in network sampler evaluation; do
  python3 -m benchmarks.run --suites "$suite" --record "$out/BENCHMARKS.md" "$@" 2>&1 | tee -a "$out/benchmarks.log" \
    || status=1
done
exit $status
