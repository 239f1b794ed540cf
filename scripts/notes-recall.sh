#!/usr/bin/env bash
# Notes recall@1 on everyday/notes-recall: 12 workflow notes and 24 questions asked in other
# words than their note's. Prints, for BM25 alone and for hybrid search, how many questions
# rank the right note first.
#
#   scripts/notes-recall.sh                  # this checkout's skd (built if needed)
#   SKD=/path/to/skd scripts/notes-recall.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/skd-binary.sh
source scripts/skd-binary.sh
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export SKD_CONFIG="$work/config.toml" SKD_SKILLS_DIR="$work/skills" SKD_IMPORT_SKILL_DIRS="" \
       SKD_NOTES="$PWD/everyday/notes-recall/notes" SKD_INDEX_DIR="$work/index"
: > "$SKD_CONFIG"
mkdir -p "$SKD_SKILLS_DIR"
"$SKD" index --quiet >/dev/null
"$SKD" models pull all-minilm-l6-v2 >/dev/null
python3 - "$SKD" <<'PY'
import json, subprocess, sys, time
skd = sys.argv[1]
questions = json.load(open("everyday/notes-recall/questions.json"))
for mode in ["bm25", "hybrid"]:
    right, misses, started = 0, [], time.time()
    for q in questions:
        args = [skd, "search", "--notes", "-n", "1", "--json"] + (["--hybrid"] if mode == "hybrid" else []) + [q["question"]]
        out = subprocess.run(args, capture_output=True, text=True)
        hits = json.loads(out.stdout)["hits"] if out.stdout.strip() else []
        top = hits[0]["path"].rsplit("/", 1)[-1] if hits else None
        if top == q["note"]:
            right += 1
        else:
            misses.append((q["question"], q["note"], top))
    n = len(questions)
    print(f"{mode:<7} recall@1 {right}/{n} = {right/n:.2f}  ({(time.time()-started)/n:.2f} s a query, process start included)")
    for m in misses:
        print(f"   missed: {m[0]!r}: want {m[1]}, got {m[2]}")
PY
