#!/usr/bin/env bash
# The kdcl demo on Fashion-MNIST: a CNN teacher (cnn-small: two 3x3 conv +
# BatchNorm blocks) trained on all 60000 training images, then two students of
# the same small size trained on the same images: one on the hard labels, the
# other distilled from the teacher's soft targets. Prints test errors,
# parameter counts and wall times side by side.
#   tools/demo.sh [OUT_DIR]        (KDCL=path/to/kdcl, KDCL_DATA=dir override;
#                                   DEMO_* variables below change the recipe)
set -euo pipefail
cd "$(dirname "$0")/.."
kdcl=${KDCL:-build/src/cli/kdcl}
data=${KDCL_DATA:-/usr/share/datasets/fashion-mnist}
out=${1:-build/demo}
mkdir -p "$out"

# Recipe: a short teacher so that the whole demo fits in about 10 minutes on
# 2 CPU cores with PoCL (the README's results use the same network trained
# for 15 epochs: tools/cnn_distill_experiment.py).
teacher_arch=${DEMO_TEACHER_ARCH:-cnn-small}
teacher_epochs=${DEMO_TEACHER_EPOCHS:-4}
student_arch=${DEMO_STUDENT_ARCH:-conv(8,3,p=1),relu,maxpool(2),conv(16,3,p=1),relu,maxpool(2),flatten,linear(K)}
student_epochs=${DEMO_STUDENT_EPOCHS:-8}
T=${DEMO_T:-4}
alpha=${DEMO_ALPHA:-0.1}

errors() { # test errors printed by kdcl train/distill
    awk '/^test errors:/ { print $3 }' "$1"
}
params() { # parameter count printed by kdcl train/distill
    sed -n 's/.*examples, \([0-9]*\) params.*/\1/p' "$1" | head -1
}
run() { # name, log, command...: epoch lines (and the progress bar on a terminal) as it runs
    local name=$1 log=$2 rc
    shift 2
    echo "== $name: $*" | sed "s|$PWD/||g"
    local t0=$SECONDS
    set +e
    "$@" | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" -eq 0 ] || { echo "demo: $name failed (exit $rc)" >&2; exit 1; }
    echo "$((SECONDS - t0))" >"$log.seconds"
}

common=(--data "$data" --batch 128 --seed 1)
student=(--arch "$student_arch" --normalize --epochs "$student_epochs" --lr 0.02 --warmup 1 --momentum 0.9
    --schedule cosine)
run teacher "$out/teacher.log" "$kdcl" train "${common[@]}" --arch "$teacher_arch" --normalize \
    --flip --crop 2 --epochs "$teacher_epochs" --lr 0.05 --momentum 0.9 --weight-decay 5e-4 \
    --schedule cosine --out "$out/teacher.safetensors"
run "hard-label student" "$out/hard.log" "$kdcl" train "${common[@]}" "${student[@]}" \
    --out "$out/student-hard.safetensors"
run "distilled student" "$out/distilled.log" "$kdcl" distill "${common[@]}" "${student[@]}" \
    --teacher "$out/teacher.safetensors" --T "$T" --alpha "$alpha" \
    --out "$out/student-distilled.safetensors"

echo
"$kdcl" devices | sed -n '1,2p' | sed 's/^[* ] *//'
printf '\n%-22s %-12s %10s %12s %9s\n' model arch params "test errors" "time (s)"
row() {
    printf '%-22s %-12s %10s %12s %9s\n' "$1" "$2" "$(params "$3")" "$(errors "$3")" \
        "$(cat "$3.seconds")"
}
row teacher "$teacher_arch" "$out/teacher.log"
row "student, hard labels" "small CNN" "$out/hard.log"
row "student, distilled" "small CNN" "$out/distilled.log"
h=$(errors "$out/hard.log")
d=$(errors "$out/distilled.log")
echo
echo "student: $student_arch"
if [ "$d" -lt "$h" ]; then
    echo "on the same 60000 images, the teacher's soft targets (T = $T, alpha = $alpha) saved"
    echo "$((h - d)) of the hard-label student's $h test errors (of 10000)"
else
    echo "distillation did not beat the hard-label student this time ($d vs $h errors)"
fi
echo "checkpoints and logs: $out"
