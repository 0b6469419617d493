#!/usr/bin/env bash
# Rebuild the training data of the synthesis configs (configs/synth_spine_stage9.yaml and its lineage) under runs/,
# which git does not keep: the tissue-map datasets, from their seeds (the commands of the model card, "How it was
# made"; the files depend on the seed and count only), and copies of the two real-anatomy label-map sources.
#
#   bash scripts/make_tissue_data.sh            # what is missing; JOBS=N processes per dataset (default: all cores)
#
# On a GPU machine (scripts/gpu_check.sh, TRAIN_SYNTH=1) the tissue maps are made there: about 720 MB for 150 cases,
# far over what a device call carries; the label-map copies are small and are carried (runs/spinegeneric_ivadomed_MRI,
# runs/tcia_subset), since ../shared is not on that machine. Here: about 10 s a case per core.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
SYNTH=(python3 -m spinelesion synth)
#   folder          modality seed cases
while read -r dir modality seed n; do
  if [ -f "runs/$dir/dataset.json" ]; then continue; fi
  t0=$(date +%s)
  "${SYNTH[@]}" "runs/$dir" --n "$n" --modality "$modality" --seed "$seed" --context --workers "$JOBS" --no-progress > /dev/null
  echo "runs/$dir: $n $modality cases (seed $seed) in $(( $(date +%s) - t0 )) s"
done <<'LIST'
tissue_ct       ct 7100 21
tissue_mr       t2 7200  5
tissue_t1       t1 7300 24
tissue_jct_ct   ct 8100 20
tissue_jct_t2   t2 8200 16
tissue_vsl_ct   ct 9100 14
tissue_vsl_t2   t2 9200 10
tissue_vsl_ct2  ct 9300 24
tissue_vsl_t22  t2 9400 16
LIST
ANATOMY=../shared/data/anatomy
if [ ! -d runs/spinegeneric_ivadomed_MRI ] && [ -d "$ANATOMY/spinegeneric_ivadomed_MRI" ]; then
  cp -r "$ANATOMY/spinegeneric_ivadomed_MRI" runs/
fi
if [ ! -d runs/tcia_subset ] && [ -d "$ANATOMY/tcia_hn_ct_oar" ]; then   # the four maps the model card names
  mkdir -p runs/tcia_subset
  for f in 0522c0014 0522c0017 0522c0057 0522c0161; do cp "$ANATOMY/tcia_hn_ct_oar/tcia_${f}_hn-oar21.nii.gz" runs/tcia_subset/; done
fi
for d in runs/spinegeneric_ivadomed_MRI runs/tcia_subset; do
  [ -d "$d" ] || { echo "missing $d (copy it from ../shared/data/anatomy, or carry it to this machine)" >&2; exit 1; }
done
echo "training data ready under runs/ ($(du -sh runs | cut -f1))"
