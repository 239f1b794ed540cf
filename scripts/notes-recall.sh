#!/usr/bin/env bash
# Notes recall@1 on everyday/notes-recall: 12 workflow notes and three sets of questions asked
# in other words than their note's (questions.json: 24, the set the fusion weight was chosen
# on; heldout.json and blind.json: 36 each, written by someone who saw only the notes, the
# first before the weight was chosen, the second after; blind2.json: 36 more, written the same
# way on 2026-12-07, after the file-change work and before any retrieval change measured on
# it), plus keyword queries made here from
# the notes (each section's two rarest words, the
# way a user types a term they remember); blind3.json: 36 more, written the same way on
# 2026-12-08 and measured once, on the search as it stood (no change was tried on it).
# Prints, for BM25 alone and for hybrid search, how many queries rank the right note first,
# and how many have it among the first 4 notes.
#
#   scripts/notes-recall.sh                  # this checkout's skd (built if needed)
#   SKD=/path/to/skd scripts/notes-recall.sh
#   MODES=hybrid SETS="blind.json blind3.json" scripts/notes-recall.sh
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
import glob, json, os, re, subprocess, sys, time
skd = sys.argv[1]
root = "everyday/notes-recall"

def keyword_queries():
    """One query per note section (and per text before a note's first `##`): the section's
    two words that the fewest sections use, ties broken by the longer word."""
    sections = []
    for path in sorted(glob.glob(f"{root}/notes/*.md")):
        current = [os.path.basename(path), ""]
        sections.append(current)
        for line in open(path):
            if line.startswith("## "):
                current = [os.path.basename(path), ""]
                sections.append(current)
            elif not line.startswith("# "):
                current[1] += line
    sections = [s for s in sections if s[1].strip()]
    words = lambda text: [w.strip(".,:;()`'\"") for w in re.findall(r"[A-Za-z][A-Za-z0-9._~/-]{3,}", text.lower())]
    used_in = {}
    for _, text in sections:
        for w in set(words(text)):
            used_in[w] = used_in.get(w, 0) + 1
    return [{"question": " ".join(sorted(set(words(text)), key=lambda w: (used_in[w], -len(w), w))[:2]), "note": note}
            for note, text in sections]

names = os.environ.get("SETS", "questions.json heldout.json blind.json blind2.json blind3.json keywords").split()
modes = os.environ.get("MODES", "bm25 hybrid").split()
flags = {"bm25": [], "hybrid": ["--hybrid"]}
for name in names:
    questions = keyword_queries() if name == "keywords" else json.load(open(f"{root}/{name}"))
    for mode in modes:
        right, in_four, misses, started = 0, 0, [], time.time()
        for q in questions:
            args = [skd, "search", "--notes", "-n", "8", "--json"] + flags[mode] + [q["question"]]
            out = subprocess.run(args, capture_output=True, text=True)
            if out.returncode not in (0, 1) or not out.stdout.strip():
                sys.exit(f"skd search failed on {q['question']!r}: {out.stderr}")
            # Notes in order, once each (BM25 lists a note once per matching section).
            notes = list(dict.fromkeys(h["path"].rsplit("/", 1)[-1] for h in json.loads(out.stdout)["hits"]))[:4]
            top = notes[0] if notes else None
            in_four += q["note"] in notes
            if top == q["note"]:
                right += 1
            else:
                misses.append((q["question"], q["note"], top))
        n = len(questions)
        print(f"{name:<15} {mode:<7} recall@1 {right}/{n} = {right/n:.2f}  recall@4 {in_four}/{n}  ({(time.time()-started)/n:.2f} s a query, process start included)")
        for m in misses:
            print(f"   missed: {m[0]!r}: want {m[1]}, got {m[2]}")
PY
