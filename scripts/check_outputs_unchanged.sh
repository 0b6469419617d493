#!/usr/bin/env bash
# Fingerprint what the pipeline writes, to show a refactor changed nothing a user sees.
#
#   bash scripts/check_outputs_unchanged.sh WORK_DIR [--model CKPT]      # writes WORK_DIR/fingerprint.json
#   python scripts/fingerprint_outputs.py compare BEFORE.json AFTER.json  # exit 1 and the differences if any
#
# Runs (with the spinelesion that `python3 -m spinelesion` finds: set PYTHONPATH to a checkout to fingerprint
# another version), with the given (default: shipped) model: `spinelesion infer` on the real scans of
# ../shared/data/real (copied into WORK_DIR/in) and on 4 generated phantoms (2 CT, 2 T2,
# pathology included), and `spinelesion measure` on those phantoms' exact label maps. The fingerprint
# holds every label map's voxels and affine (hash) and every measurement record without run-time
# provenance (timings, versions, paths).
set -euo pipefail
WORK=${1:?usage: check_outputs_unchanged.sh WORK_DIR [infer options]}; shift
HERE="$(cd "$(dirname "$0")" && pwd)"
REAL=${REAL:-"$(cd "$HERE/../.." && pwd)/shared/data/real"}
mkdir -p "$WORK/in" "$WORK/measure"
python3 -m spinelesion synth "$WORK/ph_ct" --n 2 --modality ct --seed 4242 --val-fraction 0 --no-progress >/dev/null
python3 -m spinelesion synth "$WORK/ph_t2" --n 2 --modality t2 --seed 4343 --val-fraction 0 --no-progress >/dev/null
for d in ph_ct ph_t2; do
  for img in "$WORK/$d"/imagesTr/*.nii.gz; do
    b=$(basename "$img" .nii.gz)
    cp "$img" "$WORK/in/${d}_${b}.nii.gz"
    python3 -m spinelesion measure --image "$img" --labels "$WORK/$d/labelsTr/$b.nii.gz" --out "$WORK/measure/${d}_${b}.json" >/dev/null
  done
done
if [ -d "$REAL" ]; then
  for f in "$REAL"/sct_t2/t2.nii.gz "$REAL"/sct_errsm/errsm1{1,8}_t2.nii.gz "$REAL"/gm_challenge/sub-*_T2starw.nii.gz \
           "$REAL"/totalseg_ct/example_ct.nii.gz "$REAL"/sct_lumbar_t2/t2_lumbar.nii.gz; do
    cp "$f" "$WORK/in/"
  done
fi
python3 -m spinelesion infer "$WORK/in" --out "$WORK/pred" --no-overlays --quiet "$@"
python3 "$HERE/fingerprint_outputs.py" make "$WORK" > "$WORK/fingerprint.json"
echo "fingerprint: $WORK/fingerprint.json"
