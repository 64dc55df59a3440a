#!/usr/bin/env bash
# manipulation-report.sh RUN... — one table row per run of train-manipulation-model.sh
# (or any folder with the same eval-* outputs), from its `dfd eval` metrics (needs jq).
set -euo pipefail
m() {  # m FILE FIELD: a metric, 3 decimals, or –
  [[ -f "$1" ]] || { printf '–'; return; }
  jq -r "$2 | if . == null then \"–\" else (. * 1000 | round / 1000 | tostring) end" "$1"
}
fp() {  # fp FILE: share of reals judged FAKE, in %
  [[ -f "$1" ]] || { printf '–'; return; }
  jq -r '.metrics as $m | (($m.confusion_matrix.matrix[0][1] / $m.n_real * 1000 | round) / 10 | tostring) + "%"' "$1"
}
echo "| run | dfdc val AUC | dfdc val EER | timit frame AUC | timit reals flagged | timit clip AUC | UTKFace flagged | FFHQ flagged | threshold |"
echo "|---|---|---|---|---|---|---|---|---|"
for r in "$@"; do
  echo "| $(basename "$r") | $(m "$r/eval-val/metrics.json" .metrics.auc) | $(m "$r/eval-val/metrics.json" .metrics.eer) |" \
       "$(m "$r/eval-timit/metrics.json" .metrics.auc) | $(fp "$r/eval-timit/metrics.json") |" \
       "$(m "$r/eval-timit-clip/metrics.json" .metrics.auc) | $(fp "$r/eval-utk/metrics.json") | $(fp "$r/eval-ffhq/metrics.json") |" \
       "$(m "$r/eval-val/metrics.json" .metrics.threshold) |"
done
