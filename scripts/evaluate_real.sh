#!/usr/bin/env bash
# Run a model on the real healthy scans of ../shared/data/real and score it with `spinelesion evaluate`.
#
#   bash scripts/evaluate_real.sh WORK_DIR [--model CKPT] [other infer options]
#
# Copies the scans into WORK_DIR/in/<dataset>/ and the references into WORK_DIR/{cord,vertebra,body_disc}_ref/
# (../shared is never written), runs `spinelesion infer` once over all of them, then:
#   eval_cord        manual cord masks (sct_t2, sct_errsm, gm_challenge), --ref-map cord
#   eval_ct_vertebra the example CT's TotalSegmentator vertebra labels (model-made, T11-S1)
#   eval_ct_body_disc the example CT's body/disc labels (model-made)
# Every subject is healthy: every lesion is a false positive (--annotates lesion), and WORK_DIR/flags.txt
# lists each scan's lesions >= 5 mm and compression flag from its measurements.json.
set -euo pipefail
WORK=${1:?usage: evaluate_real.sh WORK_DIR [infer options]}; shift
REAL=${REAL:-"$(cd "$(dirname "$0")/../.." && pwd)/shared/data/real"}
mkdir -p "$WORK"/in/{sct_t2,sct_errsm,gm_challenge,totalseg_ct,sct_lumbar_t2,totalseg_ct_dicom} \
  "$WORK"/cord_ref/{sct_t2,sct_errsm,gm_challenge} "$WORK"/vertebra_ref/totalseg_ct "$WORK"/body_disc_ref/totalseg_ct
cp "$REAL/sct_t2/t2.nii.gz" "$WORK/in/sct_t2/"; cp "$REAL/sct_t2/t2_seg-manual.nii.gz" "$WORK/cord_ref/sct_t2/t2.nii.gz"
for s in errsm11 errsm18; do
  cp "$REAL/sct_errsm/${s}_t2.nii.gz" "$WORK/in/sct_errsm/"
  cp "$REAL/sct_errsm/${s}_t2_seg-manual.nii.gz" "$WORK/cord_ref/sct_errsm/${s}_t2.nii.gz"
done
for f in "$REAL"/gm_challenge/sub-*_T2starw.nii.gz; do
  b=$(basename "$f"); cp "$f" "$WORK/in/gm_challenge/"
  cp "${f%.nii.gz}_seg-manual.nii.gz" "$WORK/cord_ref/gm_challenge/$b"
done
cp "$REAL/totalseg_ct/example_ct.nii.gz" "$WORK/in/totalseg_ct/"
cp "$REAL/totalseg_ct/example_ct_totalseg.nii.gz" "$WORK/vertebra_ref/totalseg_ct/example_ct.nii.gz"
cp "$REAL/totalseg_ct/example_ct_body_disc.nii.gz" "$WORK/body_disc_ref/totalseg_ct/example_ct.nii.gz"
cp "$REAL/sct_lumbar_t2/t2_lumbar.nii.gz" "$WORK/in/sct_lumbar_t2/"
cp -r "$REAL/totalseg_ct_dicom/series" "$WORK/in/totalseg_ct_dicom/"
echo '{"classes": {"1": "vertebral_body", "2": "disc"}}' > "$WORK/body_disc_map.json"
spinelesion infer "$WORK/in" --out "$WORK/pred" --no-overlays "$@" || true
common=(--pred "$WORK/pred" --annotates lesion --only-ref-cases)
spinelesion evaluate "${common[@]}" --ref "$WORK/cord_ref" --ref-map cord --by dataset --out "$WORK/eval_cord"
spinelesion evaluate "${common[@]}" --ref "$WORK/vertebra_ref" --ref-map totalsegmentator --out "$WORK/eval_ct_vertebra"
spinelesion evaluate --pred "$WORK/pred" --only-ref-cases --ref "$WORK/body_disc_ref" --ref-map "$WORK/body_disc_map.json" \
  --out "$WORK/eval_ct_body_disc"
python3 - "$WORK/pred" > "$WORK/flags.txt" <<'PY'
import json, sys
from pathlib import Path
for m in sorted(Path(sys.argv[1]).rglob("measurements.json")):
    r = json.loads(m.read_text())
    big = [l for l in r.get("lesions", []) if (l.get("volume_ml") or 0) >= 0.065]
    cord = r.get("cord") or {}
    graded = sum((v.get("genant_grade") or 0) >= 1 for v in r.get("vertebrae", []))
    print(f"{m.parent.relative_to(sys.argv[1])}: lesions {len(r.get('lesions', []))} (>= 5 mm: {len(big)}), "
          f"compression {cord.get('compression_flag')}, Bilsky {cord.get('bilsky_grade')}, MSCC {cord.get('mscc_pct')}, "
          f"Genant >= 1: {graded}")
PY
cat "$WORK/flags.txt"
