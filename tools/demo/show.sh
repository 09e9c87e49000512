#!/bin/sh
# tools/demo/show.sh — the README's main job (`make demo`): ask the demo model a question, run the
# calculator tool it calls, and show its answer once it has the tool's result.
#
# The "tool" is awk arithmetic on the model's expression, accepted only when it holds digits,
# spaces, parentheses, dots and + - * / (so nothing the model writes is ever executed as code).
# The second turn goes through `glmlite chat` (the tool result as a `/tool` line); greedy decoding
# makes its first turn identical to the `run` shown above it, so that part is not printed twice.
# usage: tools/demo/show.sh [QUESTION]   (GLMLITE=path overrides ./glmlite; extra flags in GLMLITE_FLAGS)
set -eu
GLMLITE=${GLMLITE:-./glmlite}
FLAGS="--temp 0 ${GLMLITE_FLAGS:-}"
Q=${1:-What is 17 times 23?}
first=$(mktemp)
trap 'rm -f "$first"' EXIT

echo "> $Q"
# shellcheck disable=SC2086
$GLMLITE run -p "$Q" $FLAGS | tee "$first"
expr=$(sed -n 's/^\[tool call\] calculator {"expression":"\([0-9+*\/(). -]*\)"}$/\1/p' "$first" | head -n 1)
if [ -z "$expr" ]; then
    echo "(no calculator call to run)"
    exit 0
fi
result=$(awk "BEGIN { print $expr }" 2>/dev/null) || result="error: cannot evaluate $expr"
echo "[tool result] $result"
# shellcheck disable=SC2086
printf '%s\n/tool %s\n' "$Q" "$result" | $GLMLITE chat $FLAGS | sed '1,/^\[tool call\]/d'
