#!/usr/bin/env bash
# One process against `mpirun -np 2` on Fashion-MNIST for the three MPI modes
# (README: Beyond one machine (MPI), Measured here): data-parallel training,
# an ensemble of 4 members, specialists. Each process gets one PoCL thread
# (POCL_MAX_CPU_CU_COUNT=1, override it for other machines); every pair is
# run twice, in turn, with the load average printed beside each time.
#   tools/mpi_measure.sh [WORKDIR]   (default build/mpi-measure)
set -euo pipefail
cd "$(dirname "$0")/.."
K=$PWD/build/src/cli/kdcl
D=${KDCL_DATA:-/usr/share/datasets/fashion-mnist}
W=${1:-build/mpi-measure}
rm -rf "$W" && mkdir -p "$W" && cd "$W"
export POCL_MAX_CPU_CU_COUNT=${POCL_MAX_CPU_CU_COUNT:-1}
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
MPI=(mpirun --oversubscribe -np 2)
t() {
    local tag=$1
    shift
    local s e rc=0
    s=$(date +%s.%N)
    "$@" >"$tag.log" 2>&1 || rc=$?
    e=$(date +%s.%N)
    printf "%-10s rc=%d wall %.1f s  load %s\n" "$tag" "$rc" "$(echo "$e - $s" | bc)" \
        "$(cut -d' ' -f1 /proc/loadavg)"
    grep -E "test errors|members in|specialists in" "$tag.log" | head -3 || true
}
A=(--data "$D" --arch 784-256-10 --epochs 2 --batch 128 --quiet)
"$K" train "${A[@]}" --out gen.safetensors >/dev/null
"$K" specialists cluster --data "$D" --model gen.safetensors --clusters 4 --out cl.json >/dev/null
S=(--data "$D" --model gen.safetensors --clusters cl.json --epochs 1 --batch 128 --quiet)
for rep in 1 2; do
    t "dp-1p-$rep" "$K" train "${A[@]}" --out dp1.safetensors
    t "dp-2r-$rep" "${MPI[@]}" "$K" train "${A[@]}" --out dp2.safetensors
    rm -rf e1 e2 s1 s2
    t "ens-1p-$rep" "$K" train "${A[@]}" --members 4 --out e1
    t "ens-2r-$rep" "${MPI[@]}" "$K" train "${A[@]}" --members 4 --out e2
    t "spec-1p-$rep" "$K" specialists train "${S[@]}" --out s1
    t "spec-2r-$rep" "${MPI[@]}" "$K" specialists train "${S[@]}" --out s2
done
echo "samples/s per epoch (one process, then 2 ranks):"
grep -ho '"epoch": [0-9]*\|"samples_per_s": [0-9.]*' dp1.safetensors.metrics.jsonl \
    dp2.safetensors.metrics.jsonl | paste - -
