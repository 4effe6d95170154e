#!/usr/bin/env bash
# The project's GPU checks, in one timed script (docs/benchmarks.md, "GPU"):
#
#   bash benchmarks/gpu_session.sh <results folder> <folder with MNIST/raw> [device]
#
#   1. device_check.py: CPU and CUDA give identical spikes and equal gradients (MLP and CNN);
#   1b. fused_scans.py: the fused Triton scans against eager on the GPU (identical spikes, traces and
#      gradients within tolerance), then the MLP train step (784-800-10, T = 400, batch 64) timed
#      with each scan backend (target: <= 25 ms); JSON lines also in <results>/fused/;
#   2. profile_cuda.py: one MLP train step under torch.profiler (kernels, device time, top ops);
#   3. the MLP sweep (run_all.py --no-cnn) at T = 100, 400, 800: HM2-BP forward and step, BPTT, snnTorch;
#   4. one timed MNIST MLP epoch through the CLI (configs/experiment/mnist_mlp.yaml, batch 64);
#   5. the paper-CNN sweep (run_cnn.py): CNN step against the MLP step, time and memory against T;
#   6. the gpu-marked test (pytest -m gpu tests/test_device_check.py);
#   7. conv_paths.py: every conv backward path of the paper CNN on the device (batch 16, T = 400);
#   8. one timed MNIST CNN epoch through the CLI (configs/experiment/mnist_cnn.yaml, batch 16;
#      target <= 90 s) and the CNN train step with the authors' trained weights (bench_cnn.py
#      --weights <data>/hm2bp-official/checkPoint_cnn_best.txt), where most samples carry no error.
#
# PART=targets runs only the stages of the speed targets, in this order: 1, 1b, 4, 8 (about 8 min
# with the default limits, so they fit one 10-minute device command); PART=rest runs 2, 3, 5, 6, 7;
# the default runs everything.
#
# Each stage has its own time limit (seconds, environment variables below) so the whole script
# ends inside one short lease; a stage that runs out is reported as such and the next one starts.
# Everything goes to <results folder>: log.txt (all output; LOG=<file> puts it elsewhere) and one
# folder per stage, packed into results.tgz at the end. With triton importable, every stage after
# 1b runs the fused scans ("auto"); fused_scans.py times the eager path beside them.
set -u
RES=${1:?results folder}
DATA=${2:?folder with MNIST/raw}
DEV=${3:-cuda}
T_CHECK=${T_CHECK:-60} T_PROFILE=${T_PROFILE:-60} T_SWEEP=${T_SWEEP:-120} T_EPOCH=${T_EPOCH:-150}
T_CNN=${T_CNN:-100} T_TEST=${T_TEST:-60} T_PATHS=${T_PATHS:-60} T_FUSED=${T_FUSED:-120}
T_CNN_EPOCH=${T_CNN_EPOCH:-150} T_CNN_TRAINED=${T_CNN_TRAINED:-45}
PART=${PART:-all}
PY=${PY:-python3}
mkdir -p "$RES"/{check,sweep,epoch,cnn,fused,cnn_epoch}
LOG=${LOG:-$RES/log.txt}
START=$(date +%s)
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled

stage() {  # stage <name> <limit seconds> <command...>
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s) at +$(( $(date +%s) - START ))s" | tee -a "$LOG"
    local t0=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    echo "=== $name rc=$rc in $(( $(date +%s) - t0 ))s$([ $rc -eq 124 ] && echo ' (TIME LIMIT)')" | tee -a "$LOG"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  $PY -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__, 'cuda', torch.cuda.is_available())"
  $PY -c "import triton; print('triton', triton.__version__)" || echo "triton not importable: the fused scans are skipped"
} >>"$LOG" 2>&1

targets() { [ "$PART" != rest ]; }
rest() { [ "$PART" != targets ]; }
targets && stage device_check "$T_CHECK" $PY benchmarks/device_check.py --device "$DEV"
targets && stage fused_scans "$T_FUSED" bash -c "set -o pipefail; $PY benchmarks/fused_scans.py --device '$DEV' --T 400 --batch 64 \
    --warmup 3 --repeats 10 | tee '$RES/fused/fused_scans.jsonl'"
rest && stage profile "$T_PROFILE" $PY benchmarks/profile_cuda.py --device "$DEV" --T 400 --batch 64
rest && stage mlp_sweep "$T_SWEEP" $PY benchmarks/run_all.py --device "$DEV" --no-cnn --T 100 400 800 --repeats 5 \
    --out "$RES/sweep" --timeout 60
targets && stage mnist_epoch "$T_EPOCH" $PY -m hm2bp.cli fit --config configs/experiment/mnist_mlp.yaml \
    --data.init_args.data_dir "$DATA" --trainer.max_epochs 1 --trainer.accelerator "${DEV/cuda/gpu}" \
    --trainer.enable_progress_bar false --trainer.default_root_dir "$RES/epoch"
targets && stage cnn_epoch "$T_CNN_EPOCH" $PY -m hm2bp.cli fit --config configs/experiment/mnist_cnn.yaml \
    --data.init_args.data_dir "$DATA" --trainer.max_epochs 1 --trainer.accelerator "${DEV/cuda/gpu}" \
    --trainer.enable_progress_bar false --trainer.default_root_dir "$RES/cnn_epoch"
OFFICIAL="$DATA/hm2bp-official/checkPoint_cnn_best.txt"
if [ -f "$OFFICIAL" ]; then
    targets && stage cnn_trained "$T_CNN_TRAINED" $PY benchmarks/bench_cnn.py --device "$DEV" --mode train --batch 16 \
        --T 400 --repeats 5 --data-dir "$DATA" --weights "$OFFICIAL"
else
    echo "=== cnn_trained skipped: $OFFICIAL not found" | tee -a "$LOG"
fi
rest && stage cnn_sweep "$T_CNN" $PY benchmarks/run_cnn.py --device "$DEV" --T 100 400 --bptt-max-T 400 --repeats 2 \
    --out "$RES/cnn" --timeout 60
rest && stage gpu_test "$T_TEST" $PY -m pytest -q -m gpu tests/test_device_check.py -p no:cacheprovider
rest && stage conv_paths "$T_PATHS" $PY benchmarks/conv_paths.py --device "$DEV" --data-dir "$DATA"
echo "=== done at +$(( $(date +%s) - START ))s" | tee -a "$LOG"
find "$RES/epoch" -name curves.csv -exec cp {} "$RES/epoch_curves.csv" \; 2>/dev/null
find "$RES/cnn_epoch" -name curves.csv -exec cp {} "$RES/cnn_epoch_curves.csv" \; 2>/dev/null
tar -czf /tmp/hm2bp_gpu_results.tgz -C "$RES" . && mv /tmp/hm2bp_gpu_results.tgz "$RES/results.tgz"
