#!/usr/bin/env bash
# The BIG-Bench Hard proof, end to end: for each task, import it as a skill with a sealed
# split, distill the skill with the teacher, measure the student on the whole test split with
# no skill, the human-written procedure and the distilled skill (`skd bbh measure`), and
# print the table (`skd bbh report`).
#
# Everything is offline by default: the teacher is the local Qwen2.5-Coder-1.5B served by
# `skd serve` on loopback. Results are cached, so a second run only measures what changed.
# Expect minutes per task on a 2-core CPU on llama.cpp (boolean_expressions: 7 min, 2026-12-07),
# about an hour on mistral.rs.
#
#   scripts/bbh-proof.sh                                   # the default task set
#   TASKS="navigate" TEACHER="$OPENAI_BASE_URL#gpt-4o-mini" scripts/bbh-proof.sh
#
# Settings (environment): TASKS, STUDENT (default qwen2.5-coder-0.5b), TEACHER (URL#model;
# default: a local server started here), ROUNDS (4), PATIENCE (2), MIN_GAIN (2 validation
# cases), TEACHER_TIMEOUT (2400 s: a CPU teacher writing a skill), MAX_TOKENS (320), TEST
# (sealed test cases per task, 30; a larger number grows an existing suite's test split from
# cases no run has seen, keeping the earlier ones), SKD (the skd binary; default: `skd` on
# PATH, else target/debug/skd), SKD_BBH_DATA (the BBH folder, ../shared/data/bbh).
set -euo pipefail
cd "$(dirname "$0")/.."

TASKS="${TASKS:-boolean_expressions multistep_arithmetic_two object_counting navigate word_sorting tracking_shuffled_objects_three_objects sports_understanding}"
STUDENT="${STUDENT:-qwen2.5-coder-0.5b}"
ROUNDS="${ROUNDS:-4}"
PATIENCE="${PATIENCE:-2}"
MIN_GAIN="${MIN_GAIN:-2}"
TEACHER_TIMEOUT="${TEACHER_TIMEOUT:-2400}"
MAX_TOKENS="${MAX_TOKENS:-320}"
TEST="${TEST:-30}"
DATA="${SKD_BBH_DATA:-../shared/data/bbh}"
SKD="${SKD:-$(command -v skd || echo target/debug/skd)}"
[ -x "$SKD" ] || { echo "no skd binary at $SKD: cargo build -p skd-cli, or set SKD" >&2; exit 1; }

server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true; }
trap cleanup EXIT

if [ -z "${TEACHER:-}" ]; then
  port="${TEACHER_PORT:-8089}"
  "$SKD" serve --model qwen2.5-coder-1.5b --port "$port" >&2 &
  server_pid=$!
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { echo "the teacher server exited" >&2; exit 1; }
    sleep 2
  done
  curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null || { echo "the teacher server did not come up" >&2; exit 1; }
  TEACHER="http://127.0.0.1:$port/v1#default"
fi

for task in $TASKS; do
  skill="bbh-${task//_/-}"
  # Imports the task, or grows an older suite's validation or test split to the sizes asked
  # for (its sealed test cases stay); a suite split some other way is kept as it is.
  "$SKD" bbh import "$task" --data "$DATA" --test "$TEST" >&2 || echo "keeping the existing suite of $skill" >&2
  # Distilled from version 1, whatever a previous distillation left as the working copy.
  "$SKD" skill restore "$skill" 1 >/dev/null
  # The job is the task's one-line description (the skill's description also names its
  # source, which is no job for the "job alone" candidate).
  job="$(awk 'found { print; exit } /^-----/ { found = 1 }' "$DATA/cot-prompts/$task.txt")"
  echo "== $skill: distilling" >&2
  # Exit 1 means "finished, not beneficial"; anything else stops the proof.
  "$SKD" distill "$skill" --restart --job "$job" --teacher "$TEACHER" --student "$STUDENT" \
    --rounds "$ROUNDS" --patience "$PATIENCE" --min-gain "$MIN_GAIN" \
    --teacher-timeout "$TEACHER_TIMEOUT" --max-tokens "$MAX_TOKENS" >&2 || [ $? -eq 1 ]
  echo "== $skill: the sealed test split with no skill, the human procedure and the distilled skill" >&2
  # The distillation's own test runs come from the cache; the human procedure runs here.
  # Exit 1 means "measured, with cases that failed to run" (a timeout): the run goes on.
  "$SKD" bbh measure "$task" --student "$STUDENT" --max-tokens "$MAX_TOKENS" || [ $? -eq 1 ]
done

"$SKD" bbh report ${TASKS//_/-}
