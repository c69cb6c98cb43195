"""Retrieval-augmented generation: the passages nearest to a question, from the text
collection NAME, assembled into a prompt. With OPENAI_BASE_URL set, the prompt goes to
$OPENAI_BASE_URL/v1/chat/completions (any server that speaks that API; OPENAI_API_KEY and
OPENAI_MODEL when it needs them) and the answer is printed; otherwise the prompt is.

Usage: answer.py NAME K QUESTION"""

import json
import os
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import node  # noqa: E402

INSTRUCTIONS = (
    "Answer the question from the numbered passages of ipvec's documentation below. "
    "Cite the passages you use by their numbers, like [2]. If the passages do not hold "
    "the answer, say so instead of guessing."
)


def prompt(question, hits):
    blocks = []
    for n, hit in enumerate(hits, 1):
        meta = hit["metadata"]
        text = meta["text"].removeprefix(meta["where"] + ": ")
        blocks.append(f"[{n}] {meta['doc']}, \"{meta['section']}\"\n{text}")
    return "\n\n".join(["Passages:", *blocks, f"Question: {question}"])


def complete(base, user):
    body = {
        "model": os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
        "messages": [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": user},
        ],
        "temperature": 0,
    }
    request = urllib.request.Request(
        base.rstrip("/") + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    if os.environ.get("OPENAI_API_KEY"):
        request.add_header("Authorization", "Bearer " + os.environ["OPENAI_API_KEY"])
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            return json.loads(answer.read())["choices"][0]["message"]["content"]
    except urllib.error.HTTPError as e:
        sys.exit(f"{base}/v1/chat/completions: {e.code} {e.read().decode(errors='replace')}")


def main():
    name, k, question = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    hits, took = node.search(name, {"text": question, "k": k})
    print(f"retrieved {len(hits)} passages in {took * 1000:.1f} ms:")
    for n, hit in enumerate(hits, 1):
        meta = hit["metadata"]
        print(f"  [{n}] {hit['score']:.3f}  {meta['doc']}, \"{meta['section']}\"")
    user = prompt(question, hits)
    base = os.environ.get("OPENAI_BASE_URL")
    if base:
        print(f"== answer from {base} ({os.environ.get('OPENAI_MODEL', 'gpt-4o-mini')})")
        print(complete(base, user))
    else:
        print(f"== prompt ({len(INSTRUCTIONS) + len(user)} characters; set OPENAI_BASE_URL to send it)")
        print(f"system: {INSTRUCTIONS}\n\nuser:\n{user}")


main()
