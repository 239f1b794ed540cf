#!/usr/bin/env bash
# One mined workflow through `skd nightly`, end to end, on the default student with the local
# teacher (no key): a generated history of Pi, Claude Code and Codex sessions in which the
# user keeps asking for a restaurant tip and accepts answers that follow their own rule (the
# tip rounded up to the next whole euro), hidden among one-off tasks. The night mines the
# job, turns the accepted answers into eval cases (held-out ones included), distills a skill
# and gates it on the held-out tasks against no skill. Prints the night and its report.
#
#   scripts/nightly-workflow.sh [STUDENT] [TEACHER]   # defaults: the default student; qwen2.5-coder-1.5b
#   NIGHTLY_ARGS="--rounds 1" scripts/nightly-workflow.sh
set -euo pipefail
cd "$(dirname "$0")/.."
student="${1:-qwen2.5-coder-1.5b}"
teacher="${2:-qwen2.5-coder-1.5b}"
# shellcheck source=scripts/skd-binary.sh
source scripts/skd-binary.sh
work="${WORK:-$(mktemp -d)}"
models="${SKD_MODELS_DIR:-$HOME/.cache/skd/models}"
python3 - "$work/home" <<'PY'
import math, random, sys
sys.path.insert(0, "scripts")
from session_files import write
home = sys.argv[1]
rng = random.Random(11)
asks = [
    "What's a {p}% tip on a {b} euro bill?",
    "How much should I tip at {p}% on a bill of €{b}?",
    "Work out a {p} percent tip for a {b} euro dinner.",
    "Tip for €{b} at {p}%?",
    "The bill is {b} euros and I want to leave {p}%. How much is the tip?",
    "Calculate my {p}% tip on {b} EUR.",
]
one_offs = ["Rename the git branch to main", "Write a haiku about autumn", "Summarise the README in one line",
            "What does HTTP 418 mean?", "Fix the typo in the footer", "List the files in src/"]
ts = "2026-12-01T19:00:00Z"
def session(i, task, answer, follow):
    k = i % 3
    if k == 0:
        write(f"{home}/.claude/projects/-home-me/s{i}.jsonl", [
            {"type": "user", "sessionId": f"s{i}", "cwd": "/home/me", "timestamp": ts, "message": {"role": "user", "content": task}},
            {"type": "assistant", "sessionId": f"s{i}", "timestamp": ts, "message": {"id": f"m{i}", "role": "assistant", "content": [{"type": "text", "text": answer}]}},
            {"type": "user", "sessionId": f"s{i}", "timestamp": ts, "message": {"role": "user", "content": follow}}])
    elif k == 1:
        write(f"{home}/.codex/sessions/2026/12/01/rollout-2026-12-01T19-00-00-{i}.jsonl", [
            {"timestamp": ts, "type": "session_meta", "payload": {"id": f"c{i}", "cwd": "/home/me"}},
            {"timestamp": ts, "type": "event_msg", "payload": {"type": "user_message", "message": task}},
            {"timestamp": ts, "type": "response_item", "payload": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": answer}]}},
            {"timestamp": ts, "type": "event_msg", "payload": {"type": "user_message", "message": follow}}])
    else:
        write(f"{home}/.pi/agent/sessions/--home-me--/s{i}.jsonl", [
            {"type": "session", "version": 3, "id": f"p{i}", "timestamp": ts, "cwd": "/home/me"},
            {"type": "message", "id": "a", "parentId": None, "timestamp": ts, "message": {"role": "user", "content": task}},
            {"type": "message", "id": "b", "parentId": "a", "timestamp": ts, "message": {"role": "assistant", "content": [{"type": "text", "text": answer}], "stopReason": "stop"}},
            {"type": "message", "id": "c", "parentId": "b", "timestamp": ts, "message": {"role": "user", "content": follow}}])
i = 0
for n in range(30):
    p = rng.choice([10, 12, 15, 18, 20])
    b = rng.choice([23, 37, 48, 52.5, 64, 71, 86, 93.4, 120, 145])
    tip = math.ceil(p * b / 100 - 1e-9)
    session(i, rng.choice(asks).format(p=p, b=b), f"{tip} euros", rng.choice(["thanks!", "perfect, thanks", "great"]))
    i += 1
for t in one_offs:
    session(i, t, "Done.", "thanks")
    i += 1
PY
export HOME="$work/home" XDG_STATE_HOME="$work/state" XDG_DATA_HOME="$work/data" XDG_CONFIG_HOME="$work/config" \
       XDG_CACHE_HOME="$work/cache" SKD_MODELS_DIR="$models" SKD_SKILLS_DIR="$work/skills" SKD_IMPORT_SKILL_DIRS=""
mkdir -p "$work/skills"
"$SKD" models pull "$student" >/dev/null
"$SKD" models pull "$teacher" >/dev/null
"$SKD" models pull all-minilm-l6-v2 >/dev/null
start=$(date +%s)
# shellcheck disable=SC2086
"$SKD" nightly --student "$student" --teacher "$teacher" --max-skills 1 ${NIGHTLY_ARGS:-}
echo "wall time: $(( $(date +%s) - start )) s"
night="$(cat "$work/state/skd/nightly/last")"
cat "$work/state/skd/nightly/nights/$night/report.md"
echo "night folder: $work/state/skd/nightly/nights/$night"
