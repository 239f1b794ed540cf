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

# Skills: three procedures written as Agent Skills.
skd skill new boolean-expressions -d "Evaluate a Boolean expression of True, False, not, and, or with parentheses. Use for logic expression questions." >/dev/null
skd skill new word-sorting -d "Sort a list of words alphabetically. Use when asked to sort words or put words in order." >/dev/null
skd skill new object-counting -d "Count the objects of a category in a list (fruits, instruments, animals). Use for how-many questions." >/dev/null

echo "== skd skill list"; skd skill list
echo "== skd skill validate"; skd skill validate
echo "== skd index"; skd index
for q in "how many musical instruments do I have" "sort these words alphabetically" \
         "not ( True ) and ( False ) is" "which shape does this SVG path draw" "what day was yesterday"; do
  echo "== skd search \"$q\""
  skd search -n 3 "$q" || true
done
