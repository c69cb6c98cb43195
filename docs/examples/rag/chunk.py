"""Cuts Markdown files into passages for a text collection, one JSON line each:
{"id": "<file>#<n>", "text": "<where>: <passage>", "metadata": {"doc", "section", "where"}},
where <where> is "<title> / <section>" (the model sees which page and section a passage is of).

Usage: chunk.py OUT.jsonl FILE.md… A passage is a run of whole paragraphs of one section,
at most MAX_CHARS characters (a longer paragraph is cut at sentence ends); all-MiniLM-L6-v2
reads the first 256 tokens of a text, about 1,000 characters of English."""

import json
import os
import re
import sys

MAX_CHARS = 700


def sections(text):
    """(title, section heading, paragraphs) of each section of a Markdown text."""
    title, heading, paragraphs, current, fenced = "", "", [], [], False
    for line in text.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
            current.append(line)
            continue
        match = None if fenced else re.match(r"^(#{1,4})\s+(.*)", line)
        if match or (not fenced and not line.strip()):
            if current:
                paragraphs.append("\n".join(current))
                current = []
            if match:
                if paragraphs:
                    yield title, heading, paragraphs
                paragraphs = []
                heading = match.group(2).strip()
                if len(match.group(1)) == 1:
                    title = heading
            continue
        current.append(line)
    if current:
        paragraphs.append("\n".join(current))
    if paragraphs:
        yield title, heading, paragraphs


def pieces(paragraph):
    """A paragraph, cut at sentence ends into pieces of at most MAX_CHARS."""
    if len(paragraph) <= MAX_CHARS:
        return [paragraph]
    out, piece = [], ""
    for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
        if piece and len(piece) + len(sentence) + 1 > MAX_CHARS:
            out.append(piece)
            piece = ""
        piece = f"{piece} {sentence}".strip()
    return out + [piece] if piece else out


def passages(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for title, heading, paragraphs in sections(text):
        passage = ""
        for paragraph in (p for par in paragraphs for p in pieces(par)):
            if passage and len(passage) + len(paragraph) + 2 > MAX_CHARS:
                yield title, heading, passage
                passage = ""
            passage = f"{passage}\n\n{paragraph}".strip()
        if passage:
            yield title, heading, passage


def main():
    out, files = sys.argv[1], sys.argv[2:]
    count = 0
    with open(out, "w") as f:
        for path in files:
            doc = os.path.basename(path)
            for n, (title, heading, passage) in enumerate(passages(path)):
                where = title if heading in ("", title) else f"{title} / {heading}"
                row = {
                    "id": f"{doc}#{n}",
                    "text": f"{where}: {passage}",
                    "metadata": {"doc": doc, "section": heading, "where": where},
                }
                f.write(json.dumps(row) + "\n")
                count += 1
    print(f"{count} passages from {len(files)} files")


main()
