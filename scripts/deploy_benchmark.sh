#!/usr/bin/env bash
# The deployable-student benchmark of docs/RESULTS.md ("Deployable student"), end to end after
#   mtc-compress compress --recipe config/compress/synthroad_deploy.yaml
# Every model built on the way is a point of the speed/accuracy frontier: the teacher, its ReLU copy
# (act/recover), the student after prune step 1 (step1/recover), the final student, and INT8 (PTQ)
# versions of the teacher and the final student, PTQ and QAT (QAT where its checkpoint exists: the compress
# run's quantize: stage, and the teacher's own, config/compress/synthroad_teacher_qat.yaml).
#
#   scripts/deploy_benchmark.sh [COMPRESS_OUT=runs/compress/synthroad_deploy] [OUT=runs/bench/deploy]
#
# Writes bundles/deploy_*, $OUT/eval/*.json (synthroad val, torch, training size), $OUT/replay
# (mtc bench on a labelled 1280x720 bag of val frames: ground-truth accuracy as deployed and agreement,
# every model), $OUT/engines (mtc bench-engines at 1280x720 through the Perceptor, bundles in turn,
# with --profile), and the frontier (docs/img/deploy_frontier.png, $OUT/frontier.json).
# Run it with nothing else on the machine: the speed figures are paired, but a loaded machine still
# compresses the differences.
set -euo pipefail
cd "$(dirname "$0")/.."
C=${1:-runs/compress/synthroad_deploy}
OUT=${2:-runs/bench/deploy}
PY=${PY:-.venv/bin/python}
MC="$PY -m compress.cli -q"
MTC="$PY -m mtc_perception.cli"
DATA=${DATA:-data/synthroad}
mkdir -p "$OUT/eval" bundles

declare -A CK=([teacher]=runs/teacher/best.pt [relu_full]="$C/act/recover/best.pt" [step1]="$C/step1/recover/best.pt" [student]="$C/student.pt")
for n in teacher relu_full step1 student; do
  [ -f "${CK[$n]}" ] || { echo "skip $n: ${CK[$n]} missing"; continue; }
  [ -f "bundles/deploy_$n/bundle.json" ] || $MC export --ckpt "${CK[$n]}" --out "bundles/deploy_$n" --size 640x384 --name "$n"
  [ -f "$OUT/eval/$n.json" ] || $MC eval --ckpt "${CK[$n]}" --out "$OUT/eval/$n.json" --workers 1
done
for n in teacher student; do
  [ -f "bundles/deploy_${n}_int8/bundle.json" ] || \
    $MC quantize --bundle "bundles/deploy_$n" --calib "$DATA:train" --frames 128 --method minmax --out "bundles/deploy_${n}_int8" --name "${n}_int8"
done

# QAT (int8 bundles from quantization-aware checkpoints: the recipe's quantize: stage, and the teacher's own
# by `mtc-compress compress --recipe config/compress/synthroad_teacher_qat.yaml --quantize-only runs/teacher/best.pt`),
# compared with the FP32 bundles above; their torch (fake-quantized) eval beside the others
TQ=${TQ:-runs/compress/teacher_qat}
declare -A QCK=([student_qat]="$C/student_qat.pt" [teacher_qat]="$TQ/student_qat.pt")
declare -A QFP=([student_qat]=bundles/deploy_student [teacher_qat]=bundles/deploy_teacher)
for n in student_qat teacher_qat; do
  [ -f "${QCK[$n]}" ] || { echo "skip $n: ${QCK[$n]} missing"; continue; }
  [ -f "bundles/deploy_$n/bundle.json" ] || \
    $MC quantize --ckpt "${QCK[$n]}" --fp32 "${QFP[$n]}" --calib "$DATA:val" --parity-frames 32 --out "bundles/deploy_$n" --name "$n"
  [ -f "$OUT/eval/$n.json" ] || $MC eval --ckpt "${QCK[$n]}" --out "$OUT/eval/$n.json" --workers 1
done

BAG=runs/bags/val_1280x720_200
mkdir -p runs/bags
[ -d "$BAG" ] || $MC bag --dataset "$DATA" --split val --limit 200 --resize 1280x720 --out "$BAG"

models=()
for n in relu_full step1 student teacher_int8 student_int8 teacher_qat student_qat; do
  [ -f "bundles/deploy_$n/bundle.json" ] && models+=("$n=bundles/deploy_$n")
done
students=(); bundles=(--bundle teacher=bundles/deploy_teacher)
for m in "${models[@]}"; do students+=(--student "$m"); bundles+=(--bundle "$m"); done

$MTC bench --bag "$BAG" --teacher teacher=bundles/deploy_teacher "${students[@]}" --out "$OUT/replay" --backend onnxruntime --no-progress
$MTC bench-engines "${bundles[@]}" --frames "$DATA/images/val" --size 1280x720 --max-frames 100 --runs 2 --profile --out "$OUT/engines"

evals=(--eval "teacher=$OUT/eval/teacher.json")
for n in relu_full step1 student; do [ -f "$OUT/eval/$n.json" ] && evals+=(--eval "$n=$OUT/eval/$n.json"); done
$PY scripts/frontier.py --engines "$OUT/engines/engines.json" "${evals[@]}" --out docs/img/deploy_frontier.png --json "$OUT/frontier.json"
$PY scripts/frontier.py --engines "$OUT/engines/engines.json" --replay "$OUT/replay/report.json" --out docs/img/deploy_frontier_deployed.png --json "$OUT/frontier_deployed.json"
