"""Writes short entries of Debian's `fortunes` package as JSON lines for `ipvec add`:
{"text": "…", "metadata": {"category": <file name>, "author": "…"?}}.

Usage: fortunes.py COUNT OUT.jsonl. Entries are those of one or two sentences (20 to 200
characters, no tables or verse), picked in the order of a hash of their text, so that a
smaller COUNT takes a prefix of a larger one and every category keeps its share."""

import hashlib
import json
import os
import re
import sys

FOLDER = "/usr/share/games/fortunes"


def entries(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for entry in f.read().split("\n%\n"):
            yield entry.strip("\n%")


def parse(entry):
    """(text, author or None) for an entry worth keeping, else None."""
    lines = [line for line in entry.split("\n") if line.strip()]
    author = None
    if lines and re.match(r"^\s*--\s*\S", lines[-1]):
        author = re.sub(r"^\s*--\s*", "", lines.pop()).strip()
    # Tables, verse and dialogue keep their layout in tabs, runs of spaces and short lines.
    if not lines or any("\t" in line or "   " in line.strip() for line in lines):
        return None
    if len(lines) > 1 and min(len(line) for line in lines[:-1]) < 40:
        return None
    text = " ".join(" ".join(lines).split())
    if not 20 <= len(text) <= 200 or len(re.findall(r"[.!?](\s|$)", text)) > 2:
        return None
    if not re.search(r"[A-Za-z]{3}", text) or re.search(r"[<>{}|_=]|Q:|A:", text):
        return None
    return text, author


def main():
    count, out = int(sys.argv[1]), sys.argv[2]
    if not os.path.isdir(FOLDER):
        sys.exit(f"no {FOLDER}: install Debian's fortunes package (apt-get install fortunes)")
    seen, rows = set(), []
    for name in sorted(os.listdir(FOLDER)):
        path = os.path.join(FOLDER, name)
        if "." in name or not os.path.isfile(path):
            continue
        for entry in entries(path):
            parsed = parse(entry)
            if parsed is None or parsed[0] in seen:
                continue
            seen.add(parsed[0])
            metadata = {"category": name}
            if parsed[1]:
                metadata["author"] = parsed[1]
            rows.append({"text": parsed[0], "metadata": metadata})
    rows.sort(key=lambda r: hashlib.sha256(r["text"].encode()).hexdigest())
    if len(rows) < count:
        sys.exit(f"only {len(rows)} short entries in {FOLDER}, not {count}")
    with open(out, "w") as f:
        for row in rows[:count]:
            f.write(json.dumps(row) + "\n")
    categories = {r["metadata"]["category"] for r in rows[:count]}
    print(f"{count} entries of {len(rows)} short ones, {len(categories)} categories")


main()
