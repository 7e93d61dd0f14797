#!/usr/bin/env bash
# The kdcl demo on Fashion-MNIST: a teacher, a student trained on the hard
# labels and a student of the same size distilled from the teacher; prints
# their test errors, parameter counts and wall times side by side.
#   tools/demo.sh [OUT_DIR]        (KDCL=path/to/kdcl, KDCL_DATA=dir override)
set -euo pipefail
cd "$(dirname "$0")/.."
kdcl=${KDCL:-build/src/cli/kdcl}
data=${KDCL_DATA:-/usr/share/datasets/fashion-mnist}
out=${1:-build/demo}
mkdir -p "$out"

# Recipe (measured on 2 CPU cores with PoCL, see README): a dropout teacher,
# students with one small hidden layer, distillation at T = 4 with alpha = 0.5.
teacher_arch=${DEMO_TEACHER_ARCH:-784-1200-1200-10}
teacher_epochs=${DEMO_TEACHER_EPOCHS:-8}
student_arch=${DEMO_STUDENT_ARCH:-784-30-10}
student_epochs=${DEMO_STUDENT_EPOCHS:-15}
T=${DEMO_T:-4}
alpha=${DEMO_ALPHA:-0.5}

params() { # parameter count of an A-B-...-K architecture
    echo "$1" | awk -F- '{ p = 0; for (i = 1; i < NF; i++) p += ($i + 1) * $(i + 1); print p }'
}
errors() { # test errors printed by kdcl train/distill
    awk '/^test errors:/ { print $3 }' "$1"
}
run() { # name, log, command...
    local name=$1 log=$2
    shift 2
    echo "== $name: $*" | sed "s|$PWD/||g"
    local t0=$SECONDS
    "$@" --quiet >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    echo "$((SECONDS - t0))" >"$log.seconds"
    grep "^test errors" "$log"
}

common=(--data "$data" --batch 128 --seed 1)
run teacher "$out/teacher.log" "$kdcl" train "${common[@]}" --arch "$teacher_arch" \
    --dropout 0.1,0.5 --max-norm 3.5 --lr 0.1 --lr-decay 0.9 --momentum 0.5,0.95,4 \
    --epochs "$teacher_epochs" --out "$out/teacher.safetensors"
run "hard-label student" "$out/hard.log" "$kdcl" train "${common[@]}" --arch "$student_arch" \
    --lr 0.1 --lr-decay 0.9 --momentum 0.5,0.9,3 --epochs "$student_epochs" \
    --out "$out/student-hard.safetensors"
run "distilled student" "$out/distilled.log" "$kdcl" distill "${common[@]}" \
    --teacher "$out/teacher.safetensors" --arch "$student_arch" --T "$T" --alpha "$alpha" \
    --lr 0.1 --lr-decay 0.9 --momentum 0.5,0.9,3 --epochs "$student_epochs" \
    --out "$out/student-distilled.safetensors"

echo
"$kdcl" devices | sed -n '1p;3p' | sed 's/^[* ] *//'
printf '\n%-20s %-18s %10s %12s %9s\n' model arch params "test errors" "time (s)"
row() {
    printf '%-20s %-18s %10s %12s %9s\n' "$1" "$2" "$(params "$2")" "$(errors "$3")" "$(cat "$3.seconds")"
}
row teacher "$teacher_arch" "$out/teacher.log"
row "student, hard labels" "$student_arch" "$out/hard.log"
row "student, distilled" "$student_arch" "$out/distilled.log"
h=$(errors "$out/hard.log")
d=$(errors "$out/distilled.log")
echo
if [ "$d" -lt "$h" ]; then
    echo "distillation (T = $T, alpha = $alpha) saved $((h - d)) test errors of 10000 over the hard-label student"
else
    echo "distillation did not beat the hard-label student this time ($d vs $h errors)"
fi
echo "checkpoints and logs: $out"
