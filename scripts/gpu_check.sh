#!/usr/bin/env bash
# GPU checks, run once on a lent GPU machine; record what it prints in docs/benchmarks.md with the card.
#
#   bash scripts/gpu_check.sh            # GPU tests, bench_infer end to end (+ 512x512x600 CTs), bench_batch, bench_network
#   TRAIN=1 bash scripts/gpu_check.sh    # also retrain both phantom models (needs runs/gpu_data, see below)
#   TRAIN_SYNTH=1 bash scripts/gpu_check.sh   # train the default (synthesis) model, configs/synth_spine.yaml
#   TRAIN_SYNTH=1 SYNTH_CONFIG=configs/synth_spine_stage9.yaml SYNTH_RUN=runs/train_synth_stage9 bash scripts/gpu_check.sh
#                                             # another stage (its tissue maps are made there: see TRAIN_SYNTH below)
#   BENCH=0 TRAIN_SYNTH=1 ... bash scripts/gpu_check.sh   # training alone (no GPU tests, no benchmarks)
# Before a TRAIN_SYNTH call, here: bash scripts/make_tissue_data.sh (the two label-map copies; the tissue maps too,
# ~12 min on 2 cores, for a local dry run), then carry ["wheels", "runs/example_ct.nii.gz",
# "runs/spinegeneric_ivadomed_MRI", "runs/tcia_subset"] (+ the run folder to resume).
#
# The GPU machine has torch, numpy, scipy and matplotlib but not monai, nibabel or cc3d: carry
# wheels/ (gitignored) holding their cp312 wheels, made here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d wheels monai nibabel connected-components-3d pyyaml tqdm safetensors
# and copy the real example CT: cp ../shared/data/real/totalseg_ct/example_ct.nii.gz runs/
# Call (device tool): carry ["wheels", "runs/example_ct.nii.gz"], command "bash scripts/gpu_check.sh", timeout ~480 s.
# Dry run here (no GPU, about 8 min): OUT=/tmp/gpuout DEVICE=cpu bash scripts/gpu_check.sh (ran 2026-12-04).
# Writes under $OUT: gpu.txt (device, GPU tests, timings) and bench_infer.json.
# TRAIN=1 also carries runs/gpu_data/{ct,t1,t2} (phantom datasets resampled to RAS 2 mm by
# `spinelesion synth` + a resampling copy) and writes train_{ct,mr}.log, {ct,mr}/best.safetensors.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu: a dry run of this script on a machine without a GPU
export PYTHONPATH=$PWD:/tmp/pylib PYTHONWARNINGS=ignore PYTHONUNBUFFERED=1
python3 -m pip install --no-index --no-deps -q --target /tmp/pylib wheels/*.whl 2>&1 | grep -v -i warn | tail -2
{ nvidia-smi -L; python3 -c "import torch, monai, scipy; print('torch', torch.__version__, 'monai', monai.__version__, 'scipy', scipy.__version__, torch.cuda.get_device_name(0))"; } > "$OUT/gpu.txt" 2>&1
if [ "${BENCH:-1}" = 1 ]; then  # BENCH=0: training only (TRAIN_SYNTH=1), to fit one call's time
python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py >> "$OUT/gpu.txt" 2>&1
echo "== bench_infer ($DEVICE, end to end per stage; --big: 512x512x600 CT in a child process)" >> "$OUT/gpu.txt"
python3 benchmarks/bench_infer.py --device $DEVICE --big --real-ct runs/example_ct.nii.gz --json "$OUT/bench_infer.json" >> "$OUT/gpu.txt" 2>&1
echo "== bench_batch ($DEVICE, batch wall per scan by finishing workers)" >> "$OUT/gpu.txt"
python3 benchmarks/bench_batch.py --device $DEVICE --copies 4 --workers 0 1 4 --real-ct runs/example_ct.nii.gz >> "$OUT/gpu.txt" 2>&1
echo "== bench_network (shipped model)" >> "$OUT/gpu.txt"
python3 benchmarks/bench_network.py --device $DEVICE --checkpoint spinelesion/models/spine_any.safetensors >> "$OUT/gpu.txt" 2>&1
echo "== bench_synthesis (image synthesis per training step vs the network's forward+backward)" >> "$OUT/gpu.txt"
python3 benchmarks/bench_synthesis.py --device $DEVICE --batch 4 >> "$OUT/gpu.txt" 2>&1
fi
if [ "${TRAIN:-0}" = 1 ]; then
  EPOCHS=${EPOCHS:-120}; STEPS=${STEPS:-20}; TRAIN_S=${TRAIN_S:-190}
  common=(--set train.epochs=$EPOCHS --set train.steps_per_epoch=$STEPS --set validation.interval=10 --set data.num_workers=6 --set train.tensorboard=false)
  t0=$(date +%s)
  timeout $TRAIN_S python3 -m spinelesion train --config configs/phantom_ct.yaml --output runs/gpu_train_ct \
    --set "data.sources=[{adapter: msd, root: runs/gpu_data/ct}]" "${common[@]}" > "$OUT/train_ct.log" 2>&1 &
  timeout $TRAIN_S python3 -m spinelesion train --config configs/phantom_mr.yaml --output runs/gpu_train_mr \
    --set "data.sources=[{adapter: msd, root: runs/gpu_data/t1}, {adapter: msd, root: runs/gpu_data/t2}]" "${common[@]}" > "$OUT/train_mr.log" 2>&1 &
  wait
  echo "trainings done in $(( $(date +%s) - t0 )) s (both at once on one GPU)" >> "$OUT/gpu.txt"
  for m in ct mr; do
    mkdir -p "$OUT/$m"; cp runs/gpu_train_$m/best.safetensors runs/gpu_train_$m/metrics.csv "$OUT/$m/" 2>>"$OUT/gpu.txt"
    tr '\r' '\n' < "$OUT/train_$m.log" | grep -v "it/s\|s/it\|^ *$" | tail -4 >> "$OUT/gpu.txt"
  done
fi
if [ "${TRAIN_SYNTH:-0}" = 1 ]; then
  # The tissue maps (about 720 MB) are made here on all cores by scripts/make_tissue_data.sh; carry its two small
  # label-map copies (runs/spinegeneric_ivadomed_MRI, runs/tcia_subset: run the script once before the call) and,
  # to continue a run, the run folder (resume.pt). ../shared is not on the GPU machine: the configs' path to the
  # spine-generic maps is linked to the carried copy. Images are synthesised on the GPU in the training step; the
  # workers only crop tissue maps.
  t0=$(date +%s)
  bash scripts/make_tissue_data.sh >> "$OUT/gpu.txt" 2>&1 || echo "make_tissue_data.sh failed" >> "$OUT/gpu.txt"
  echo "training data: $(( $(date +%s) - t0 )) s" >> "$OUT/gpu.txt"
  if [ ! -e ../shared/data/anatomy/spinegeneric_ivadomed_MRI ]; then
    mkdir -p ../shared/data/anatomy && ln -s "$PWD/runs/spinegeneric_ivadomed_MRI" ../shared/data/anatomy/
  fi
  EPOCHS=${EPOCHS:-400}; STEPS=${STEPS:-50}; TRAIN_S=${TRAIN_S:-420}
  CONFIG=${SYNTH_CONFIG:-configs/synth_spine.yaml}; RUN=${SYNTH_RUN:-runs/train_synth_spine}
  resume=(); [ -f "$RUN/resume.pt" ] && resume=(--resume)
  t0=$(date +%s)
  timeout $TRAIN_S python3 -m spinelesion train --config "$CONFIG" --output "$RUN" --device $DEVICE "${resume[@]}" \
    --set train.epochs=$EPOCHS --set train.steps_per_epoch=$STEPS --set validation.interval=25 \
    --set data.num_workers=8 --set train.batch_size=4 > "$OUT/train_synth.log" 2>&1
  echo "synthesis training ($CONFIG): $(( $(date +%s) - t0 )) s" >> "$OUT/gpu.txt"
  mkdir -p "$OUT/synth"
  cp "$RUN/last.safetensors" "$RUN/best.safetensors" "$RUN/metrics.csv" "$RUN/resume.pt" "$OUT/synth/" 2>>"$OUT/gpu.txt"
  tr '\r' '\n' < "$OUT/train_synth.log" | grep -v "it/s\|s/it\|^ *$" | tail -6 >> "$OUT/gpu.txt"
fi
tail -40 "$OUT/gpu.txt"
