#!/usr/bin/env bash
# The main job on a fresh machine: build skd, index a knowledge base and a skill library,
# validate the skills and answer questions by search. The knowledge base is BIG-Bench
# Hard's human-written step-by-step procedures (../shared/data/bbh/cot-prompts), read from
# where they are and never copied into the repository.
#
#   scripts/demo.sh [BBH_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bbh="${1:-${BBH_DIR:-../shared/data/bbh}}"
[ -d "$bbh/cot-prompts" ] || { echo "no BBH data at $bbh (pass its path as the first argument)" >&2; exit 2; }

# The dev profile optimizes dependencies (Cargo.toml), so this shares the test build.
cargo build --locked -p skd-cli
skd() { cargo run -q --locked -p skd-cli -- "$@"; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export SKD_CONFIG="$work/config.toml" SKD_NOTES="$work/notes" SKD_SKILLS_DIR="$work/skills" \
       SKD_INDEX_DIR="$work/index" SKD_IMPORT_SKILL_DIRS=""
: > "$SKD_CONFIG"

# Notes: one markdown note per BBH procedure (a temporary copy with a title line).
mkdir -p "$SKD_NOTES"
for f in "$bbh"/cot-prompts/*.txt; do
  task=$(basename "$f" .txt)
  # Line 1 is the data set's canary and line 2 a `-----` rule (which markdown would read as a
  # heading underline): keep the canary as a comment, make the procedure a section.
  { echo "<!-- $(head -n 1 "$f") -->"; echo "# ${task//_/ }"; echo; sed -n 3p "$f";
    echo; echo "## Worked examples"; echo; tail -n +4 "$f"; } > "$SKD_NOTES/$task.md"
done

# Skills: three BIG-Bench Hard procedures as Agent Skills; the body is the task's
# human-written description and its first worked example.
skill_from_bbh() { # NAME TASK DESCRIPTION
  local f="$bbh/cot-prompts/$2.txt" body="$work/$1.body.md"
  { echo; echo "# ${2//_/ }"; echo; sed -n 3p "$f"; echo; echo "## Worked example"; echo;
    awk 'NR>3 && /^Q: /{n++} n==1' "$f"; } > "$body"
  skd skill new "$1" -d "$3" --body-file "$body" >/dev/null
}
skill_from_bbh boolean-expressions boolean_expressions "Evaluate a Boolean expression of True, False, not, and, or with parentheses. Use for questions like 'not ( True ) and ( False ) is'."
skill_from_bbh word-sorting word_sorting "Sort a list of words alphabetically. Use when asked to sort words or put words in order."
skill_from_bbh object-counting object_counting "Count the objects of a category in a list (fruits, instruments, animals). Use for how-many questions."

echo "== skd skill list"; skd skill list
echo "== skd skill validate"; skd skill validate
echo "== skd index"; skd index
for q in "how many musical instruments do I have" "sort these words alphabetically"; do
  echo "== skd search \"$q\""
  skd search -n 3 "$q" || true
done

# The main job: the embedded default student (pulled on first use, no API key) runs tasks
# with the skills it retrieves, step by step.
student="${SKD_STUDENT:-qwen2.5-coder-0.5b}"
skd models pull "$student"
export SKD_RUNS_DIR="$work/runs"
for task in "not ( True and False ) or True is" \
            "Sort the following words alphabetically: List: pear apple mango" \
            "I have a piano, a flute, and two violins. How many musical instruments do I have?"; do
  echo "== skd run \"$task\""
  skd run --student "$student" --max-steps 4 "$task" || true
done
