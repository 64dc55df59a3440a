#!/usr/bin/env bash
# synthetic-report.sh RUN_DIR — the tables of the synthetic-face detector's card from the
# `dfd eval` outputs train-synthetic-model.sh wrote (needs jq).
set -euo pipefail
R=${1:-runs/syn}
T=${TAG:-}
row() {  # row LABEL METRICS_JSON
  [[ -f "$2" ]] || { echo "| $1 | (not run) | | | |"; return; }
  jq -r --arg l "$1" '.metrics as $m | $m.confusion_matrix.matrix as $c |
    "| \($l) | \(if $m.auc == null then "–" else ($m.auc * 1000 | round / 1000 | tostring) end) | " +
    "\(if $m.n_fake > 0 then (($c[1][1] / $m.n_fake * 1000 | round) / 10 | tostring) + "% of \($m.n_fake)" else "–" end) | " +
    "\(if $m.n_real > 0 then (($c[0][1] / $m.n_real * 1000 | round) / 10 | tostring) + "% of \($m.n_real)" else "–" end) | " +
    "\($m.threshold * 10000 | round / 10000) |"' "$2"
}
echo "| measured on | AUC | synthetic flagged | reals flagged | threshold |"
echo "|---|---|---|---|---|"
for g in stable-diffusion-2.1 stylegan1 stylegan2; do
  row "leave-one-out: all $g vs FFHQ test reals (model trained without $g)" "$R/logo-$g/eval-heldout$T/metrics.json"
done
for g in stable-diffusion-2.1 stylegan1 stylegan2; do
  row "shipped model: $g test part vs FFHQ test reals" "$R/final/eval-test-$g$T/metrics.json"
done
row "shipped model: FFHQ test reals" "$R/final/eval-fp-ffhq$T/metrics.json"
row "shipped model: UTKFace held-out half" "$R/final/eval-fp-utk$T/metrics.json"
row "shipped model: dfdc-faces reals not used (7,500)" "$R/final/eval-fp-dfdc$T/metrics.json"
