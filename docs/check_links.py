#!/usr/bin/env python3
"""Checks the relative links of the ipvec book (docs/).

Every Markdown file under docs/ is read; each link or image `[text](target)` that is not an
absolute URL must name a file that exists (relative to the file holding it), and an `#anchor`
must name a heading of the target page, spelled as mdBook spells heading ids: lowercase,
punctuation dropped, spaces as `-`, repeated headings numbered `-1`, `-2`, ….  Every chapter
listed in SUMMARY.md must exist, and every Markdown file of docs/ must be listed there.
Fenced code blocks and inline code are skipped.

With `--html DIR` (the book mdBook built, `target/book`), the rendered chapters are checked
too: every relative `href` must name a file of DIR, and its `#fragment` an `id` mdBook gave
that page, so the slugs above are checked against mdBook's own.  Exits 1 with the list of
broken links.

    python3 docs/check_links.py [--html target/book]
"""

import os
import re
import sys
import unicodedata
from urllib.parse import unquote

DOCS = os.path.dirname(os.path.abspath(__file__))
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
HTML_ID = re.compile(r"""<a\s+(?:name|id)\s*=\s*["']([^"']+)["']""")


def prose_lines(text):
    """The lines of `text` outside fenced code blocks, with their numbers."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        yield number, line


def without_code(line):
    """`line` with its inline code spans blanked out."""
    return re.sub(r"(`+)(.+?)\1", lambda m: " " * len(m.group(0)), line)


def slug(heading):
    """mdBook's id for a heading: its text without markup, lowercased, only alphanumerics,
    `_` and `-` kept, whitespace turned into `-`."""
    text = re.sub(r"<[^>]+>", "", heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.replace("`", "").replace("*", "")
    out = []
    for ch in text.strip().lower():
        if ch.isspace():
            out.append("-")
        elif ch in "_-" or unicodedata.category(ch)[0] in "LN":
            out.append(ch)
    return "".join(out)


_anchors = {}


def anchors(path):
    """The heading ids (and explicit `<a id>`s) of the Markdown file at `path`."""
    if path not in _anchors:
        found = set()
        seen = {}
        with open(path, encoding="utf-8") as f:
            for _, line in prose_lines(f.read()):
                found.update(HTML_ID.findall(line))
                m = HEADING.match(line)
                if not m:
                    continue
                base = slug(m.group(2))
                n = seen.get(base, 0)
                seen[base] = n + 1
                found.add(base if n == 0 else f"{base}-{n}")
        _anchors[path] = found
    return _anchors[path]


def targets(line):
    for m in LINK.finditer(line):
        yield m.group(1)
    m = REF_DEF.match(line)
    if m:
        yield m.group(1)


def check(path, errors):
    rel = os.path.relpath(path, DOCS)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    links = []
    for number, line in prose_lines(text):
        for target in targets(without_code(line)):
            links.append(target)
            if EXTERNAL.match(target) or target.startswith("//"):
                continue
            where = f"docs/{rel}:{number}: {target}"
            file_part, _, anchor = target.partition("#")
            file_part = unquote(file_part)
            if file_part:
                dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part))
                if not os.path.exists(dest):
                    errors.append(f"{where}: no file {os.path.relpath(dest, DOCS)}")
                    continue
                if not dest.startswith(DOCS + os.sep):
                    errors.append(f"{where}: outside docs/, so not in the book")
                    continue
            else:
                dest = path
            if anchor:
                if not dest.endswith(".md"):
                    errors.append(f"{where}: an anchor into a file that is not a chapter")
                elif unquote(anchor) not in anchors(dest):
                    errors.append(
                        f"{where}: no heading #{anchor} in docs/{os.path.relpath(dest, DOCS)}"
                    )
    return links


HREF = re.compile(r'\b(?:href|src)\s*=\s*"([^"]*)"')
ID = re.compile(r'\bid\s*=\s*"([^"]*)"')


def check_html(book, errors):
    """The rendered chapters' relative links, against the files and ids of `book`."""
    ids = {}
    pages = []
    for root, _, files in os.walk(book):
        for f in files:
            if f.endswith(".html"):
                path = os.path.join(root, f)
                with open(path, encoding="utf-8") as h:
                    text = h.read()
                ids[path] = set(ID.findall(text))
                pages.append((path, text))
    count = 0
    for path, text in sorted(pages):
        name = os.path.relpath(path, book)
        # print.html repeats every chapter; 404.html is served from any depth.
        if name in ("print.html", "404.html"):
            continue
        for href in HREF.findall(text):
            if EXTERNAL.match(href) or href.startswith("//") or not href:
                continue
            count += 1
            file_part, _, anchor = href.partition("#")
            file_part = unquote(file_part.partition("?")[0])
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            where = f"{os.path.relpath(path)}: {href}"
            if not os.path.exists(dest):
                errors.append(f"{where}: no file {os.path.relpath(dest)}")
            elif anchor and dest.endswith(".html") and unquote(anchor) not in ids.get(dest, ()):
                errors.append(f"{where}: no id {anchor!r} in {os.path.relpath(dest)}")
    return count


def main():
    errors = []
    pages = []
    for root, dirs, files in os.walk(DOCS):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "book")
        pages += [os.path.join(root, f) for f in sorted(files) if f.endswith(".md")]
    summary = os.path.join(DOCS, "SUMMARY.md")
    listed = set()
    count = 0
    for page in pages:
        links = check(page, errors)
        count += len(links)
        if page == summary:
            listed = {
                os.path.normpath(os.path.join(DOCS, unquote(t.partition("#")[0])))
                for t in links
                if not EXTERNAL.match(t)
            }
    for page in pages:
        if page != summary and page not in listed:
            errors.append(f"docs/{os.path.relpath(page, DOCS)}: not listed in docs/SUMMARY.md")
    html = ""
    if "--html" in sys.argv[1:]:
        book = sys.argv[sys.argv.index("--html") + 1]
        if not os.path.isfile(os.path.join(book, "index.html")):
            errors.append(f"{book}: no book here; run `mdbook build docs` first")
        else:
            html = f"; {check_html(book, errors)} links in the HTML of {book}"
    if errors:
        print(f"{len(errors)} broken link(s) in docs/:", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    print(f"docs/: {len(pages)} pages, {count} links{html}: all resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
