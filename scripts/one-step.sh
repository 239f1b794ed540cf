#!/usr/bin/env bash
# Issue #16's one-step target measured as a user meets it: each boolean-eval task of the
# everyday set through `skd run` (the everyday library behind retrieval, the default
# settings), a warm-up run first (it writes the skill's system prompt to the prefix store),
# then RUNS timed runs; wall time of the whole process, model load included. Prints one line
# a run: seconds, the skill used, the answer, the expected answer.
#
#   scripts/one-step.sh [STUDENT]          # default qwen2.5-coder-1.5b (the default student);
#                                          # "http://127.0.0.1:8089/v1#m": a server
#   SKD=/path/to/skd RUNS=3 scripts/one-step.sh
#   EXTRA="--skill-placement user" ...     # other `skd run` settings
set -euo pipefail
cd "$(dirname "$0")/.."
student="${1:-qwen2.5-coder-1.5b}"
runs="${RUNS:-2}"
[[ $runs =~ ^[0-9]+$ ]] || { echo "RUNS must be a number, not '$runs'" >&2; exit 2; }
# shellcheck source=scripts/skd-binary.sh
source scripts/skd-binary.sh
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r everyday/skills "$work/skills"
mkdir "$work/ws"
export SKD_CONFIG="$work/config.toml" SKD_NOTES="$PWD/everyday/notes" SKD_SKILLS_DIR="$work/skills" \
       SKD_INDEX_DIR="$work/index" SKD_IMPORT_SKILL_DIRS="" SKD_RUNS_DIR="$work/runs"
: > "$SKD_CONFIG"
"$SKD" index > /dev/null
case "$student" in
  http://*|https://*) ;;   # an OpenAI-compatible server serves its own model
  *) "$SKD" models pull "$student" > /dev/null ;;
esac

python3 - "$PWD/everyday/skills/boolean-eval/evals/evals.json" > "$work/tasks.tsv" <<'EOF'
import json, sys
for case in json.load(open(sys.argv[1]))["evals"]:
    if case.get("split", "train") == "train":
        print(f"{case['prompt']}\t{case['expected_output']}")
EOF
while IFS=$'\t' read -r task expected; do
  for run in warm-up $(seq 1 "$runs"); do
    started=$(date +%s.%N)
    # A run that fails still gets its line ("no answer") and its last error lines; Ctrl-C
    # (skd exits 130) ends the script. stdin is not the task list.
    # shellcheck disable=SC2086
    "$SKD" run --student "$student" --workspace "$work/ws" --json ${EXTRA:-} "$task" \
      > "$work/run.jsonl" 2> "$work/run.err" < /dev/null \
      || { rc=$?; [ "$rc" -eq 130 ] && exit 130; tail -n 3 "$work/run.err" >&2; }
    ended=$(date +%s.%N)
    python3 - "$work/run.jsonl" "$run" "$task" "$expected" "$started" "$ended" <<'EOF'
import json, sys
path, run, task, expected, started, ended = sys.argv[1:]
events = [json.loads(l) for l in open(path) if l.strip()]
skill = next((e["name"] for e in events if e["event"] == "skill_activated"), "-")
end = events[-1] if events and events[-1]["event"] == "finish" else {}
answer = end.get("answer") or end.get("outcome") or "no answer"
print(f"{float(ended) - float(started):5.1f} s  {run:<7}  {skill:<13}  {answer!r:<10} (expected {expected})  {task}")
EOF
  done
done < "$work/tasks.tsv"
