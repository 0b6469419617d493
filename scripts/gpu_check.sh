#!/usr/bin/env bash
# GPU checks, run once on a lent GPU machine (see docs/benchmarks.md for the recorded results).
#
# Carries: wheels/ (cp312 wheels of monai, nibabel, pydicom, cc3d, pyyaml, tqdm, safetensors, pytest)
# and runs/gpu_data/{ct,t1,t2} (phantom datasets resampled to RAS 2 mm, made here by
# `spinelesion synth` + a resampling copy, since the GPU machine has no scipy for the generator).
# Writes under $OUT: gpu.txt (device, GPU tests, network timings), train_{ct,mr}.log,
# {ct,mr}/best.safetensors and {ct,mr}/metrics.csv.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:/tmp/pylib PYTHONWARNINGS=ignore
python3 -m pip install --no-index --no-deps -q --target /tmp/pylib wheels/*.whl 2>&1 | grep -v -i warn | tail -2
{ nvidia-smi -L; python3 -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, torch.cuda.get_device_name(0))"; } > "$OUT/gpu.txt" 2>&1
EPOCHS=${EPOCHS:-120}; STEPS=${STEPS:-20}; TRAIN_S=${TRAIN_S:-190}
common=(--set train.epochs=$EPOCHS --set train.steps_per_epoch=$STEPS --set validation.interval=10 --set data.num_workers=6 --set train.tensorboard=false)
t0=$(date +%s)
timeout $TRAIN_S python3 -m spinelesion train --config configs/phantom_ct.yaml --output runs/gpu_train_ct \
  --set "data.sources=[{adapter: msd, root: runs/gpu_data/ct}]" "${common[@]}" > "$OUT/train_ct.log" 2>&1 &
timeout $TRAIN_S python3 -m spinelesion train --config configs/phantom_mr.yaml --output runs/gpu_train_mr \
  --set "data.sources=[{adapter: msd, root: runs/gpu_data/t1}, {adapter: msd, root: runs/gpu_data/t2}]" "${common[@]}" > "$OUT/train_mr.log" 2>&1 &
# GPU tests run beside the trainings (small)
python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py >> "$OUT/gpu.txt" 2>&1
wait
echo "trainings done in $(( $(date +%s) - t0 )) s (both at once on one GPU)" >> "$OUT/gpu.txt"
for m in ct mr; do
  mkdir -p "$OUT/$m"; cp runs/gpu_train_$m/best.safetensors runs/gpu_train_$m/metrics.csv "$OUT/$m/" 2>>"$OUT/gpu.txt"
  tr '\r' '\n' < "$OUT/train_$m.log" | grep -v "it/s\|s/it\|^ *$" | tail -4 >> "$OUT/gpu.txt"
done
python3 benchmarks/bench_network.py --device cuda --checkpoint runs/gpu_train_ct/best.safetensors >> "$OUT/gpu.txt" 2>&1
python3 benchmarks/bench_network.py --device cuda --checkpoint runs/gpu_train_ct/best.safetensors --amp off >> "$OUT/gpu.txt" 2>&1
tail -30 "$OUT/gpu.txt"
