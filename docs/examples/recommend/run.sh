#!/usr/bin/env bash
# Recommendations over Fashion-MNIST (Debian's dataset-fashion-mnist): images as 784-d vectors
# with a category and a price, "more like this" by an item's stored vector, and users as the
# mean of the items they liked, with filters. docs/examples/recommend.md tells more.
source "$(dirname "$0")/../common.sh"

[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] ||
  fail "no Fashion-MNIST in /usr/share/datasets/fashion-mnist: apt-get install dataset-fashion-mnist"
COUNT=10000
[ "$EXAMPLE_SIZE" = small ] && COUNT=2000
start_node

echo "== items"
python3 "$EXAMPLES/recommend/items.py" "$COUNT" "$WORK/items.jsonl"
ipvec collection create items --dim 784 --metric cosine >/dev/null
started=$(now)
ipvec --json add items "$WORK/items.jsonl" >"$WORK/added.json"
python3 -c "
import json
added = json.load(open('$WORK/added.json'))['added']
took = $(now) - $started
print(f'added {added} items in {took:.1f} s: {added / took:.0f} items/s')"

python3 "$EXAMPLES/recommend/recommend.py" items "$WORK/items.jsonl"
