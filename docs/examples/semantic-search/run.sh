#!/usr/bin/env bash
# Semantic search over short entries of Debian's fortunes package: a text collection embedded
# by the local all-MiniLM-L6-v2, asked questions in plain words, with and without a filter.
# docs/examples/semantic-search.md tells what it shows.
source "$(dirname "$0")/../common.sh"

[ -d /usr/share/games/fortunes ] || fail "no /usr/share/games/fortunes: apt-get install fortunes"
need_model
COUNT=3000
[ "$EXAMPLE_SIZE" = small ] && COUNT=500
start_node

echo "== data"
python3 "$EXAMPLES/semantic-search/fortunes.py" "$COUNT" "$WORK/fortunes.jsonl"

echo "== add"
ipvec collection create fortunes --embedding local >/dev/null
started=$(now)
ipvec --json add fortunes "$WORK/fortunes.jsonl" >"$WORK/added.json"
took=$(python3 -c "print(f'{$(now) - $started:.1f}')")
python3 -c "
import json, sys
added = json.load(open('$WORK/added.json'))
print(f'added {added[\"added\"]} entries in $took s: {added[\"added\"] / $took:.1f} entries/s')"

echo "== questions"
python3 "$EXAMPLES/semantic-search/ask.py" fortunes 3 -- \
  "Why do computers never do what I want?" \
  "Is it a good idea to get married?" \
  "What should I eat to stay healthy?" \
  "How do I become rich?" \
  "Can a machine think like a person?"

echo "== questions, only entries of the work category"
python3 "$EXAMPLES/semantic-search/ask.py" fortunes 3 \
  '{"must": [{"key": "category", "match": "work"}]}' -- \
  "How do I become rich?" \
  "Does my boss know what I do all day?"

echo "== a question from the command line"
ipvec search fortunes "What is the meaning of life?" -k 3 | tee "$WORK/hits.txt"
first=$(head -1 "$WORK/hits.txt" | cut -d' ' -f1)
echo "\$ ipvec --json get fortunes $first"
ipvec --json get fortunes "$first" | python3 -c 'import json, sys; print(json.load(sys.stdin)["metadata"])'
