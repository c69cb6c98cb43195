"""Asks the `fortunes` collection questions in plain words over the daemon's HTTP API and
prints the best entries for each, then the search latency over every question asked.

Usage: ask.py NAME K [FILTER_JSON] -- QUESTION… (the latency is printed without a filter)"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import node  # noqa: E402

ROUNDS = 5


def main():
    split = sys.argv.index("--")
    name, k, *rest = sys.argv[1:split]
    questions = sys.argv[split + 1:]
    body = {"k": int(k)}
    if rest:
        body["filter"] = json.loads(rest[0])
    first = []
    for question in questions:
        hits, took = node.search(name, dict(body, text=question))
        first.append(took)
        print(f"? {question}")
        for hit in hits:
            meta = hit["metadata"]
            author = f"  -- {meta['author']}" if "author" in meta else ""
            print(f"  {hit['score']:.3f}  [{meta['category']}] {meta['text']}{author}")
    if "filter" in body:
        return
    # Latency seen by a client on this machine: a new question is embedded, then searched;
    # one asked again finds its vector in the node's embedding cache (docs/embeddings.md).
    again = [node.search(name, dict(body, text=q))[1] for _ in range(ROUNDS) for q in questions]
    print(
        f"latency, k={k}: new question p50 {node.percentile(first, 50) * 1000:.1f} ms, "
        f"max {max(first) * 1000:.1f} ms ({len(first)} asked); "
        f"asked again p50 {node.percentile(again, 50) * 1000:.1f} ms, "
        f"p95 {node.percentile(again, 95) * 1000:.1f} ms ({len(again)} asked)"
    )


main()
