#!/usr/bin/env bash
# `skd logs` and `skd mine` over a generated history of N sessions (default 10,000) in the
# four formats: 40 recurring jobs phrased several ways, hidden among one-off tasks. Prints
# wall time and peak memory of the first run, and of a second run with nothing new.
#
#   scripts/bench-logs.sh [N]
#   SKD=/path/to/skd scripts/bench-logs.sh 2000
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}"
# shellcheck source=scripts/skd-binary.sh
source scripts/skd-binary.sh
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
models="${SKD_MODELS_DIR:-$HOME/.cache/skd/models}"
"$SKD" models pull all-minilm-l6-v2 >/dev/null
python3 - "$work/home" "$n" <<'PY'
import random, sys
sys.path.insert(0, "scripts")
from session_files import write
home, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
verbs = ["Draft", "Write", "Prepare", "Put together", "Can you do"]
jobs = [f"the {w} report for the {t} team" for w in ["weekly", "monthly", "quarterly", "incident", "sales"]
        for t in ["platform", "design", "sales", "support", "finance", "legal", "hiring", "data"]]
people = ["Ana", "Ben", "Chen", "Dara", "Eli", "Farah"]
def task(i):
    if rng.random() < 0.4:
        return f"One-off question {i}: what is {rng.randint(1, 999)} times {rng.randint(1, 999)} for {rng.choice(people)}?"
    return f"{rng.choice(verbs)} {rng.choice(jobs)} and send it to {rng.choice(people)}"
ts = "2026-11-30T09:00:00Z"
for i in range(n):
    t = task(i)
    k = i % 3
    if k == 0:
        write(f"{home}/.claude/projects/p{i % 50}/s{i}.jsonl", [
            {"type": "user", "sessionId": f"s{i}", "cwd": "/w", "timestamp": ts, "message": {"role": "user", "content": t}},
            {"type": "assistant", "sessionId": f"s{i}", "timestamp": ts, "message": {"id": f"m{i}", "role": "assistant", "content": [{"type": "text", "text": "Done."}]}},
            {"type": "user", "sessionId": f"s{i}", "timestamp": ts, "message": {"role": "user", "content": rng.choice(["thanks!", "no, that's wrong", "Now something else entirely"])}}])
    elif k == 1:
        write(f"{home}/.codex/sessions/2026/11/30/rollout-2026-11-30T09-00-00-{i}.jsonl", [
            {"timestamp": ts, "type": "session_meta", "payload": {"id": f"c{i}", "cwd": "/w"}},
            {"timestamp": ts, "type": "event_msg", "payload": {"type": "user_message", "message": t}},
            {"timestamp": ts, "type": "response_item", "payload": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]}}])
    else:
        write(f"{home}/.pi/agent/sessions/--w--/s{i}.jsonl", [
            {"type": "session", "version": 3, "id": f"p{i}", "timestamp": ts, "cwd": "/w"},
            {"type": "message", "id": "a", "parentId": None, "timestamp": ts, "message": {"role": "user", "content": t}},
            {"type": "message", "id": "b", "parentId": "a", "timestamp": ts, "message": {"role": "assistant", "content": [{"type": "text", "text": "Done."}], "stopReason": "stop"}}])
PY
export HOME="$work/home" XDG_STATE_HOME="$work/state" XDG_DATA_HOME="$work/data" XDG_CONFIG_HOME="$work/config" \
       SKD_MODELS_DIR="$models" SKD_SKILLS_DIR="$work/skills" SKD_IMPORT_SKILL_DIRS=""
mkdir -p "$work/skills"
measure() {
  /usr/bin/time -f "%e s, %M KB peak" "$SKD" "$@" --json > "$work/out.json" 2> "$work/time.txt" || true
  tail -1 "$work/time.txt"
}
echo "sessions: $n"
echo "skd logs, first run:        $(measure logs)   episodes: $(python3 -c "import json;print(len(json.load(open('$work/out.json'))['episodes']))")"
echo "skd logs, nothing new:      $(measure logs)"
echo "skd mine, first run:        $(measure mine)   proposals: $(python3 -c "import json;print(len(json.load(open('$work/out.json'))['proposals']))")"
echo "skd mine, nothing new:      $(measure mine)"
