#!/usr/bin/env bash
# The everyday agent task set (everyday/skills: 10 workflow skills, 25 agent-mode tasks, each
# with its workspace) run through `skd eval`: every task with its skill and with no skill, on
# one student, through the agent loop. Prints one row per skill and the totals, and writes
# the per-skill JSON to $OUT (default: a temporary folder, printed at the end).
#
#   scripts/everyday.sh [STUDENT]            # default qwen2.5-coder-1.5b (the default student);
#                                            # "http://127.0.0.1:8089/v1#m": a server (skd serve)
#   SKD=/path/to/skd scripts/everyday.sh     # another skd binary (default: this checkout's)
#   SKILLS="open-todos word-count" ...       # only these skills
#   EVAL_ARGS="--reply free-text" ...         # other agent settings (skd eval --help)
#   BASELINE=skip ...                        # only the "with the skill" side
#   PARALLEL=0 ...                           # cases decoded together as the student batches
#                                            # them (faster; default 1: one case at a time,
#                                            # since batched greedy decoding is not reproducible)
#   LIBRARY=1 ...                            # "with the skill" found as `skd run` finds it:
#                                            # retrieval over the 10 skills and everyday/notes
#                                            # (skd eval --library; EVAL_ARGS="--catalog-size 5")
set -euo pipefail
cd "$(dirname "$0")/.."
student="${1:-qwen2.5-coder-1.5b}"
# shellcheck source=scripts/skd-binary.sh
source scripts/skd-binary.sh
out="${OUT:-$(mktemp -d)}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# A private library: skd eval writes its reports beside each skill, and the checkout stays clean.
cp -r everyday/skills "$work/skills"
notes="$work/no-notes"
library_args=""
if [ -n "${LIBRARY:-}" ]; then
  notes="$PWD/everyday/notes"
  library_args="--library"
fi
export SKD_CONFIG="$work/config.toml" SKD_SKILLS_DIR="$work/skills" SKD_IMPORT_SKILL_DIRS="" \
       SKD_NOTES="$notes" SKD_INDEX_DIR="$work/index"
: > "$SKD_CONFIG"
case "$student" in
  http://*|https://*) ;;   # an OpenAI-compatible server ("http://host:port/v1#model") serves its own
  *) "$SKD" models pull "$student" >/dev/null ;;
esac

skills="${SKILLS:-$(ls everyday/skills)}"
for skill in $skills; do
  # 256 reasoning tokens a step, as `skd run` has by default.
  # shellcheck disable=SC2086
  "$SKD" eval "$skill" --student "$student" --baseline "${BASELINE:-none}" --no-cache --max-tokens 256 --parallel "${PARALLEL:-1}" $library_args ${EVAL_ARGS:-} --json \
    > "$out/$skill.json" \
    || [ $? -eq 1 ]   # exit 1: some case could not be run; the JSON still says which
done
# Keep each case's transcript (evals/results/runs/...) with the summary.
for skill in $skills; do
  [ -d "$work/skills/$skill/evals/results" ] && mkdir -p "$out/results" && cp -r "$work/skills/$skill/evals/results" "$out/results/$skill"
done
python3 - "$out" $skills <<'EOF'
import json, sys
out, skills = sys.argv[1], sys.argv[2:]
rows, tot = [], {"n": 0, "with": 0, "without": 0, "secs_with": 0.0, "secs_without": 0.0, "tok_with": 0.0, "tok_without": 0.0}
print(f"{'skill':<16} {'tasks':>5} {'with skill':>10} {'no skill':>9} {'s/task with':>11} {'s/task without':>14} {'tokens with':>11}")
for s in skills:
    e = json.load(open(f"{out}/{s}.json"))["entry"]
    n = len(e["cases"])
    w = sum(c["with_skill"] for c in e["cases"])
    b = sum(bool(c.get("baseline")) for c in e["cases"])
    ws = e["with_skill"]
    bs = e.get("baseline") or {"seconds_per_case": 0.0, "tokens_per_case": 0.0}
    print(f"{s:<16} {n:>5} {w:>10} {b:>9} {ws['seconds_per_case']:>11.1f} {bs['seconds_per_case']:>14.1f} {ws['tokens_per_case']:>11.0f}")
    tot["n"] += n; tot["with"] += w; tot["without"] += b
    tot["secs_with"] += ws["seconds_per_case"] * n; tot["secs_without"] += bs["seconds_per_case"] * n
    tot["tok_with"] += ws["tokens_per_case"] * n; tot["tok_without"] += bs["tokens_per_case"] * n
n = tot["n"]
print(f"{'all':<16} {n:>5} {tot['with']:>10} {tot['without']:>9} {tot['secs_with']/n:>11.1f} {tot['secs_without']/n:>14.1f} {tot['tok_with']/n:>11.0f}")
print(f"with the skill {100*tot['with']/n:.0f}%, without {100*tot['without']/n:.0f}%; "
      f"tokens/task {tot['tok_with']/n:.0f} with, {tot['tok_without']/n:.0f} without")
EOF
echo "per-skill JSON: $out"
