#!/usr/bin/env bash
# The main job on a fresh machine, no API key: a knowledge base of workflow notes and a
# library of our own skills (everyday/), validated, indexed and searched; then the embedded
# default student runs everyday tasks in a workspace with tools, each task once without any
# skill and once with the skill retrieval picks, and a closing table shows what the skill
# changed. Everything it writes goes to a temporary folder.
#
#   scripts/demo.sh                 # default student (qwen2.5-coder-1.5b)
#   SKD_STUDENT=qwen2.5-coder-0.5b scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# The quickest build that serves the main job: llama.cpp alone, without mistral.rs or the
# embedding model (README, Development). The dev profile optimizes dependencies (Cargo.toml).
bash scripts/install-build-deps.sh
cargo build --locked -p skd-cli --no-default-features --features llama-cpp
skd="${CARGO_TARGET_DIR:-target}/debug/skd"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r everyday/skills "$work/skills"
export SKD_CONFIG="$work/config.toml" SKD_NOTES="$PWD/everyday/notes" SKD_SKILLS_DIR="$work/skills" \
       SKD_INDEX_DIR="$work/index" SKD_IMPORT_SKILL_DIRS="" SKD_RUNS_DIR="$work/runs"
: > "$SKD_CONFIG"

echo "== skd skill list"; "$skd" skill list
echo "== skd skill validate"; "$skd" skill validate
echo "== skd index"; "$skd" index
for q in "how many to-dos are left" "when is the weekly update due"; do
  echo "== skd search \"$q\""
  "$skd" search -n 3 "$q" || true
done

student="${SKD_STUDENT:-qwen2.5-coder-1.5b}"
"$skd" models pull "$student"

# Each task: the skill whose eval workspace it runs in (empty: no files), the task, the
# expected answer.
tasks=(
  "|A box holds 17 red and 25 blue marbles. How many marbles are in the box?|42"
  "|not ( True and False ) or True is|True"
  "open-todos/evals/workspaces/home|How many of my to-dos are still open?|3"
  "expense-total/evals/workspaces/october|How much did I spend in total according to my expense sheet?|85"
  "contact-lookup/evals/workspaces/contacts|What is Priya's phone number?|+44 20 7946 0123"
)
results="$work/results.tsv"
: > "$results"
for entry in "${tasks[@]}"; do
  IFS='|' read -r fixture task expected <<< "$entry"
  for mode in without with; do
    ws="$work/ws-$mode"
    rm -rf "$ws" && mkdir -p "$ws"
    [ -n "$fixture" ] && cp -r "everyday/skills/$fixture/." "$ws/"
    flags=(--workspace "$ws" --max-steps 4 --json)
    [ "$mode" = without ] && flags+=(--no-skill)
    echo "== skd run ($mode skill) \"$task\""
    "$skd" run --student "$student" "${flags[@]}" "$task" > "$work/run.jsonl" || true
    python3 - "$work/run.jsonl" "$mode" "$task" "$expected" >> "$results" <<'EOF'
import json, sys
path, mode, task, expected = sys.argv[1:]
events = [json.loads(l) for l in open(path) if l.strip()]
skill = next((e["name"] for e in events if e["event"] == "skill_activated"), "-")
end = events[-1] if events and events[-1]["event"] == "finish" else {}
answer = (end.get("answer") or end.get("outcome") or "no answer").replace("\t", " ").replace("\n", " ")
secs = end.get("elapsed_ms", 0) / 1000
print("\t".join([task, expected, mode, skill, answer[:200], f"{secs:.1f}"]))
print(f"   {mode} skill ({skill}): {answer[:60]!r} in {secs:.1f} s", file=sys.stderr)
EOF
  done
done

echo
python3 - "$results" "$student" <<'EOF'
import sys
from collections import defaultdict
rows = defaultdict(dict)
order = []
for line in open(sys.argv[1]):
    task, expected, mode, skill, answer, secs = line.rstrip("\n").split("\t")
    if task not in rows:
        order.append(task)
    rows[task]["expected"] = expected
    rows[task][mode] = (skill, answer, float(secs))
def norm(text):
    return " ".join(text.strip().rstrip(".").lower().split())
def mark(expected, answer):
    # The answer alone is right; an answer that only contains it among other text is not.
    a, e = norm(answer), norm(expected)
    try:
        same_number = float(a.replace(",", "")) == float(e)
    except ValueError:
        same_number = False
    return "right" if a == e or same_number else "wrong"
print(f"Student {sys.argv[2]}: each task without a skill, then with the skill retrieval chose.\n")
print(f"| task | expected | no skill | with skill | skill used |")
print(f"|---|---|---|---|---|")
for task in order:
    r = rows[task]
    cells = []
    for mode in ("without", "with"):
        skill, answer, secs = r.get(mode, ("-", "-", 0.0))
        shown = answer if len(answer) <= 40 else answer[:39] + "…"
        cells.append(f"{shown} ({mark(r['expected'], answer)}, {secs:.0f} s)")
    print(f"| {task[:48]} | {r['expected']} | {cells[0]} | {cells[1]} | {r.get('with', ('-',))[0]} |")
right = {m: sum(mark(rows[t]["expected"], rows[t].get(m, ("-", "-", 0.0))[1]) == "right" for t in order)
         for m in ("without", "with")}
print(f"\nright: {right['without']} of {len(order)} without a skill, {right['with']} of {len(order)} with one")
EOF
