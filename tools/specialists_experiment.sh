#!/usr/bin/env bash
# Specialists with a dustbin class (paper section 5) end to end on data where a
# generalist confuses classes: Fashion-MNIST (T-shirt / pullover / coat / shirt,
# sandal / sneaker / boot) with a deliberately small generalist.
#   1. generalist            kdcl train
#   2. class clusters        kdcl specialists cluster (covariance GEMM + K-means)
#   3. specialists           kdcl specialists train, timed with 1 and with N
#                            workers (the parallel speed-up)
#   4. combination           kdcl specialists eval (top-1, and overlapping
#                            clusters with top-2 for the Table 4 breakdown)
# Results go to OUT_DIR/results.md (and the logs beside it).
#   tools/specialists_experiment.sh [OUT_DIR]
# Environment: KDCL (binary, default build/src/cli/kdcl), KDCL_DATA (default
# the Debian dataset-fashion-mnist files), SPEC_NAMES (class names file,
# default: Fashion-MNIST's), SPEC_GEN_ARCH, SPEC_GEN_EPOCHS, SPEC_EPOCHS,
# SPEC_CLUSTERS, SPEC_JOBS, SPEC_QUICK=1 (a short run for checks).
# Many classes: tools/make_digits_fashion20.py writes MNIST + Fashion-MNIST as
# one 20-class dataset; then KDCL_DATA=DIR SPEC_NAMES=DIR/class_names.txt
# SPEC_GEN_ARCH=784-32-20 SPEC_CLUSTERS=6 tools/specialists_experiment.sh OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
kdcl=${KDCL:-build/src/cli/kdcl}
data=${KDCL_DATA:-/usr/share/datasets/fashion-mnist}
out=${1:-build/specialists}
mkdir -p "$out"

gen_arch=${SPEC_GEN_ARCH:-784-24-10}
gen_epochs=${SPEC_GEN_EPOCHS:-10}
spec_epochs=${SPEC_EPOCHS:-20}
clusters=${SPEC_CLUSTERS:-4}
jobs=${SPEC_JOBS:-2}
if [ "${SPEC_QUICK:-0}" = 1 ]; then
    gen_epochs=2
    spec_epochs=1
fi

if [ -n "${SPEC_NAMES:-}" ]; then
    names=(--class-names "$SPEC_NAMES")
else
    printf '%s\n' "T-shirt/top" Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag "Ankle boot" \
        >"$out/fashion_names.txt"
    names=(--class-names "$out/fashion_names.txt")
fi

step() { # name, log, command...
    local name=$1 log=$2
    shift 2
    echo "== $name" >&2
    local t0=$SECONDS
    "$@" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    echo "$((SECONDS - t0))" >"$log.seconds"
}

step generalist "$out/generalist.log" "$kdcl" train --data "$data" --arch "$gen_arch" \
    --epochs "$gen_epochs" --lr 0.1 --lr-decay 0.9 --momentum 0.5,0.9,3 --seed 1 --quiet \
    --out "$out/generalist.safetensors"
step clusters "$out/cluster.log" "$kdcl" specialists cluster --data "$data" \
    --model "$out/generalist.safetensors" --clusters "$clusters" --seed 1 \
    "${names[@]}" --out "$out/clusters.json"
step "clusters with overlap 2" "$out/cluster2.log" "$kdcl" specialists cluster --data "$data" \
    --model "$out/generalist.safetensors" --clusters "$clusters" --seed 1 \
    --overlap 2 "${names[@]}" --out "$out/clusters2.json"

spec_opts=(--data "$data" --model "$out/generalist.safetensors" --epochs "$spec_epochs"
    --lr 0.1 --lr-decay 0.9 --momentum 0.5,0.9,2 --seed 1 --quiet)
step "specialists, 1 worker" "$out/train1.log" "$kdcl" specialists train "${spec_opts[@]}" \
    --clusters "$out/clusters.json" --jobs 1 --out "$out/spec1"
step "specialists, $jobs workers" "$out/trainN.log" "$kdcl" specialists train "${spec_opts[@]}" \
    --clusters "$out/clusters.json" --jobs "$jobs" --out "$out/spec"
step "overlapping specialists, $jobs workers" "$out/train2.log" "$kdcl" specialists train \
    "${spec_opts[@]}" --clusters "$out/clusters2.json" --jobs "$jobs" --out "$out/spec2"

step "eval top-1" "$out/eval.log" "$kdcl" specialists eval --data "$data" \
    --model "$out/generalist.safetensors" --specialists "$out/spec" "${names[@]}" \
    --json "$out/eval.json"
step "eval overlapping, top-2" "$out/eval2.log" "$kdcl" specialists eval --data "$data" \
    --model "$out/generalist.safetensors" --specialists "$out/spec2" --top-n 2 "${names[@]}" \
    --json "$out/eval2.json"

wall() { sed -n 's/.* in \([0-9.]*\) s wall.*/\1/p' "$1"; }
w1=$(wall "$out/train1.log")
wn=$(wall "$out/trainN.log")
{
    echo "# Specialists on $data"
    echo
    "$kdcl" devices | sed -n '1,2p' | sed 's/^[* ] *//'
    echo
    echo "generalist $gen_arch, $gen_epochs epochs: $(grep '^test errors' "$out/generalist.log")"
    echo "specialists: the generalist's architecture with |S|+1 outputs, $spec_epochs epochs each"
    echo
    echo "## Clusters ($clusters, K-means on the correlation columns of the covariance)"
    echo
    grep -A1 '^cluster ' "$out/cluster.log" | grep -v '^--'
    echo
    echo "## Training in parallel"
    echo
    echo "| workers | wall (s) | speed-up |"
    echo "|---|---|---|"
    echo "| 1 | $w1 | 1.00x |"
    echo "| $jobs | $wn | $(awk -v a="$w1" -v b="$wn" 'BEGIN { printf "%.2fx", a / b }') |"
    echo
    grep '^|' "$out/trainN.log"
    echo
    echo "## Generalist vs generalist + specialists (top-1, disjoint clusters)"
    echo
    sed -n '/^| examples/,$p' "$out/eval.log"
    echo
    echo "## Overlapping clusters (each class in its 2 nearest), top-2"
    echo
    grep -A1 '^cluster ' "$out/cluster2.log" | grep -v '^--'
    echo
    sed -n '/^| examples/,$p' "$out/eval2.log"
} >"$out/results.md"
cat "$out/results.md"
