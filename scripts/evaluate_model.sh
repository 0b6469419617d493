#!/usr/bin/env bash
# Evaluate a candidate default model the way spinelesion/models/MODEL_CARD.md reports it.
#
#   bash scripts/evaluate_model.sh CHECKPOINT WORK_DIR [--families]
#
# 1. calibrate its lesion clean-up on the validation cases of runs/tissue_{ct,mr,t1}
#    (scripts/calibrate_lesions.py) -> WORK_DIR/model.safetensors;
# 2. the real healthy scans of ../shared/data/real (scripts/evaluate_real.sh) -> WORK_DIR/real/;
# 3. phantoms of the classic renderer (CT seed 9000 x 6, T2 seed 9200 x 4, made once in WORK_DIR/ph)
#    -> WORK_DIR/ph_eval/ (`spinelesion evaluate --by modality`, measurements against truth);
# 4. with --families: the held-out family test set runs/synth_test (scripts/make_synth_testset.py)
#    -> WORK_DIR/st_eval/ (`--by runs/synth_test/groups.csv`);
# 5. with --holdout: the held-out appearance sets runs/holdout_thin and runs/holdout_thick (make_synth_testset.py
#    --slice-mm 1 4 / 5 7 --no-renderer --seed 1; configs/synth_holdout.yaml) -> WORK_DIR/ho_{thin,thick}_eval/,
#    and runs/holdout_slab when it exists (--slice-mm 1 4 --slab-mm 20 40 --families ct t1 t2 t2star random
#    --no-renderer --seed 1: a field of view never trained on) -> WORK_DIR/ho_slab_eval/.
set -euo pipefail
CK=${1:?usage: evaluate_model.sh CHECKPOINT WORK_DIR [--families|--holdout]}; W=${2:?}; FAMILIES=${3:-}
mkdir -p "$W"
M="$W/model.safetensors"
python3 scripts/calibrate_lesions.py --model "$CK" --data runs/tissue_ct --data runs/tissue_mr --data runs/tissue_t1 \
  --out "$M" > "$W/calibrate.log" 2>&1
rm -rf "$W/real"; bash scripts/evaluate_real.sh "$W/real" --model "$M" > "$W/real.log" 2>&1
if [ ! -d "$W/ph/all" ]; then
  spinelesion synth "$W/ph/ct" --n 6 --modality ct --seed 9000 --val-fraction 0 --no-progress > /dev/null
  spinelesion synth "$W/ph/t2" --n 4 --modality t2 --seed 9200 --val-fraction 0 --no-progress > /dev/null
  mkdir -p "$W/ph/all/images" "$W/ph/all/labels" "$W/ph/all/truth"
  for d in ct t2; do
    cp "$W/ph/$d"/imagesTr/*.nii.gz "$W/ph/all/images/"; cp "$W/ph/$d"/labelsTr/*.nii.gz "$W/ph/all/labels/"
    cp "$W/ph/$d"/truth/*.json "$W/ph/all/truth/"
  done
fi
rm -rf "$W/ph_pred"; spinelesion infer "$W/ph/all/images" --out "$W/ph_pred" --model "$M" --no-overlays --quiet \
  > "$W/ph_infer.log" 2>&1 || true
spinelesion evaluate --pred "$W/ph_pred" --ref "$W/ph/all/labels" --truth "$W/ph/all/truth" --by modality \
  --out "$W/ph_eval" > "$W/ph_eval.log" 2>&1
if [ "$FAMILIES" = "--families" ]; then
  rm -rf "$W/st_pred"; spinelesion infer runs/synth_test/images --out "$W/st_pred" --model "$M" --no-overlays --quiet \
    > "$W/st_infer.log" 2>&1 || true
  spinelesion evaluate --pred "$W/st_pred" --ref runs/synth_test/labels --by runs/synth_test/groups.csv \
    --out "$W/st_eval" > "$W/st_eval.log" 2>&1
fi
if [ "$FAMILIES" = "--holdout" ]; then
  for set in thin thick slab; do
    [ -d "runs/holdout_$set" ] || continue
    rm -rf "$W/ho_${set}_pred"; spinelesion infer "runs/holdout_$set/images" --out "$W/ho_${set}_pred" --model "$M" \
      --no-overlays --quiet > "$W/ho_${set}_infer.log" 2>&1 || true
    spinelesion evaluate --pred "$W/ho_${set}_pred" --ref "runs/holdout_$set/labels" --by "runs/holdout_$set/groups.csv" \
      --out "$W/ho_${set}_eval" > "$W/ho_${set}_eval.log" 2>&1
  done
fi
echo "done: $W"
