#!/usr/bin/env bash
# Retrieval-augmented generation over this repository's documentation: Markdown cut into
# passages, a text collection of them, the passages nearest to a question assembled into a
# prompt for a chat model (sent when OPENAI_BASE_URL is set). docs/examples/rag.md tells more.
source "$(dirname "$0")/../common.sh"

need_model
QUESTION=${1:-"How do I tell ipvec where the embedding model's files are?"}
if [ "$EXAMPLE_SIZE" = small ]; then
  DOCS=(getting-started embeddings troubleshooting introduction)
  FILES=("${DOCS[@]/#/$ROOT/docs/}")
  FILES=("${FILES[@]/%/.md}")
else
  FILES=("$ROOT"/docs/*.md "$ROOT/README.md")
fi
start_node

echo "== passages"
python3 "$EXAMPLES/rag/chunk.py" "$WORK/passages.jsonl" "${FILES[@]}"
ipvec collection create docs --embedding local >/dev/null
started=$(now)
ipvec --json add docs "$WORK/passages.jsonl" >"$WORK/added.json"
python3 -c "
import json
added = json.load(open('$WORK/added.json'))['added']
took = $(now) - $started
print(f'added {added} passages in {took:.1f} s: {added / took:.1f} passages/s')"

echo "== question: $QUESTION"
python3 "$EXAMPLES/rag/answer.py" docs 4 "$QUESTION"
