#!/usr/bin/env python3
"""Renders the daemon's OpenAPI document as the book's API reference (docs/api-reference.md).

Reads the OpenAPI 3.1 document a daemon serves at `/openapi.json` and prints Markdown: how
requests authenticate, the errors any route answers and their JSON shape, an index of the
endpoints, then every path and method with its summary, parameters, request body fields,
responses and the errors it names, and last every schema with its fields.  Headings get the
ids mdBook gives them (check_links.py's `slug`), so the page's own links resolve.

node/tests/api_reference.rs renders the document of a running daemon and fails when the
committed page differs; `IPVEC_UPDATE_API_REFERENCE=1 cargo test -p ipvec-node --test
api_reference` writes the page again.  By hand:

    curl -s http://127.0.0.1:5080/openapi.json > openapi.json
    python3 docs/openapi_md.py openapi.json > docs/api-reference.md

Python 3 standard library only.
"""

import json
import re
import sys

# check_links.py sits beside this script; importing it leaves no __pycache__ in docs/.
sys.dont_write_bytecode = True
from check_links import slug  # noqa: E402

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
SCHEMA_REF = "#/components/schemas/"
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def prose(text):
    """`text` as one Markdown line: lines joined, `|` escaped for tables, and `<`, `>` and
    `&` outside code spans written as entities so that mdBook does not read them as HTML."""
    text = " ".join(line.strip() for line in (text or "").splitlines()).strip()
    out = []
    last = 0
    for m in CODE_SPAN.finditer(text):
        out.append(_escape(text[last : m.start()]))
        out.append(m.group(0).replace("|", "\\|"))
        last = m.end()
    out.append(_escape(text[last:]))
    return "".join(out)


def _escape(text):
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
    )


def code(text):
    """`text` as an inline code span."""
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


class Page:
    """The Markdown lines, and the id mdBook gives each heading (repeats numbered)."""

    def __init__(self):
        self.lines = []
        self.seen = {}

    def heading(self, level, text):
        base = slug(text)
        n = self.seen.get(base, 0)
        self.seen[base] = n + 1
        self.lines += [f"{'#' * level} {text}", ""]
        return base if n == 0 else f"{base}-{n}"

    def para(self, text):
        self.lines += [text, ""]

    def table(self, header, rows):
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "---|" * len(header))
        for row in rows:
            self.lines.append("| " + " | ".join(cell or " " for cell in row) + " |")
        self.lines.append("")

    def text(self):
        while self.lines and not self.lines[-1]:
            self.lines.pop()
        return "\n".join(self.lines) + "\n"


class Renderer:
    def __init__(self, doc):
        self.doc = doc
        self.schemas = doc.get("components", {}).get("schemas", {})
        self.page = Page()
        # Schema name -> heading id, fixed before any link to them is written.
        self.schema_ids = {}

    # Types.

    def ref_name(self, ref):
        return ref[len(SCHEMA_REF) :] if ref.startswith(SCHEMA_REF) else ref

    def link(self, name):
        anchor = self.schema_ids.get(name)
        return f"[{code(name)}](#{anchor})" if anchor else code(name)

    def type_of(self, s):
        """A schema's type in a few words, schemas named by links."""
        if not s:
            return "any"
        if "$ref" in s:
            return self.link(self.ref_name(s["$ref"]))
        for key in ("oneOf", "anyOf"):
            if key in s:
                return " or ".join(self.type_of(v) for v in s[key])
        if "allOf" in s:
            return " and ".join(self.type_of(v) for v in s["allOf"])
        if "enum" in s:
            return "one of " + ", ".join(code(json.dumps(v)) for v in s["enum"])
        kinds = s.get("type", "any")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        words = [self.kind(k, s) for k in kinds]
        return " or ".join(words)

    def kind(self, kind, s):
        if kind == "array":
            return f"array of {self.type_of(s.get('items'))}"
        if kind == "object":
            extra = s.get("additionalProperties")
            if isinstance(extra, dict) and extra:
                return f"map of string to {self.type_of(extra)}"
            return "object"
        if kind == "null":
            return "null"
        notes = []
        if "format" in s:
            notes.append(s["format"])
        if "minimum" in s:
            notes.append(f"≥ {s['minimum']}")
        if "maximum" in s:
            notes.append(f"≤ {s['maximum']}")
        return f"{kind} ({', '.join(notes)})" if notes else kind

    def description_of(self, s):
        """A schema's description, or that of the one variant of a nullable union."""
        if s.get("description"):
            return s["description"]
        for key in ("oneOf", "anyOf", "allOf"):
            described = [v["description"] for v in s.get(key, []) if v.get("description")]
            if len(described) == 1:
                return described[0]
        return ""

    def field_rows(self, s):
        """The rows (field, type, required, description) of an object schema."""
        required = set(s.get("required", []))
        rows = []
        for name, prop in s.get("properties", {}).items():
            described = prose(self.description_of(prop))
            if "example" in prop:
                described += f" Example: {code(json.dumps(prop['example']))}."
            rows.append(
                [
                    code(name),
                    self.type_of(prop),
                    "yes" if name in required else "",
                    described.strip(),
                ]
            )
        return rows

    def schema_body(self, s):
        """A schema's fields as a table, or its variants as a list."""
        if s.get("properties"):
            self.page.table(["Field", "Type", "Required", "Description"], self.field_rows(s))
            if s.get("additionalProperties") is False:
                self.page.para("Fields not listed here are refused.")
        elif "oneOf" in s or "anyOf" in s:
            items = []
            for v in s.get("oneOf", s.get("anyOf")):
                described = prose(self.description_of(v))
                items.append(f"- {self.type_of(v)}" + (f": {described}" if described else ""))
            self.page.lines += ["One of:", ""] + items + [""]
        else:
            self.page.para(f"Type: {self.type_of(s)}.")

    # Responses and the errors every route answers.

    def operations(self):
        for path, item in self.doc.get("paths", {}).items():
            for method in METHODS:
                if method in item:
                    yield path, method, item[method]

    def common_errors(self):
        """The responses every operation answers alike, by status: the errors any route
        answers (the gate, the limits), which the page lists once."""
        ops = [op for _, _, op in self.operations()]
        common = {}
        if not ops:
            return common
        for status, response in ops[0].get("responses", {}).items():
            if not status.startswith(("4", "5")):
                continue
            variants = {}
            for op in ops:
                other = op.get("responses", {}).get(status)
                if other is None:
                    break
                key = json.dumps(other, sort_keys=True)
                variants[key] = variants.get(key, 0) + 1
            else:
                key = max(variants, key=lambda k: (variants[k], k))
                common[status] = json.loads(key)
        return common

    def is_bytes(self, schema):
        """Whether a schema is a byte string (an array of integers, as utoipa writes one)."""
        return schema.get("type") == "array" and schema.get("items", {}).get("type") == "integer"

    def body(self, content):
        """What a request or response body holds, from its media types."""
        parts = []
        for media, spec in content.items():
            schema = spec.get("schema")
            if media.endswith("json") and schema:
                parts.append(f"{self.type_of(schema)} ({code(media)})")
            elif schema and self.is_bytes(schema):
                parts.append(f"bytes ({code(media)})")
            elif schema:
                parts.append(f"{self.type_of(schema)} ({code(media)})")
            else:
                parts.append(code(media))
        return ", ".join(parts)

    # The page.

    def render(self):
        info = self.doc.get("info", {})
        # Schema headings come last, but links to them come first: their ids are fixed
        # after the headings above them, so the page is laid out once to learn them.
        operations = list(self.operations())
        common = self.common_errors()
        self.lay_out(info, operations, common)
        self.schema_ids = {name: anchor for name, anchor in self.schema_anchors}
        self.page = Page()
        self.lay_out(info, operations, common)
        return self.page.text()

    def lay_out(self, info, operations, common):
        page = self.page
        page.heading(1, "HTTP API reference")
        page.para(
            f"Every route of the daemon's HTTP API ({prose(info.get('title', ''))} "
            f"{info.get('version', '')}), rendered from the OpenAPI {self.doc.get('openapi', '')} "
            "document it serves at `GET /openapi.json`. The [HTTP API](api.md) chapter is the "
            "guide: addresses, tokens, limits, filters and examples."
        )
        page.para(
            "This page is generated by `docs/openapi_md.py`; do not edit it by hand. After "
            "changing the API, write it again with "
            "`IPVEC_UPDATE_API_REFERENCE=1 cargo test -p ipvec-node --test api_reference` and "
            "commit it; that test fails while the page and the API differ."
        )
        if info.get("description"):
            page.para(prose(info["description"]))

        page.heading(2, "Authentication")
        self.authentication()

        errors_id = page.heading(2, "Errors")
        error_schema = self.error_schema(common)
        shape = f" as {self.link(error_schema)}" if error_schema else ""
        page.para(
            f"A failed request answers a status of 400 or above with a JSON body{shape}: "
            '`{"error": {"code": "…", "message": "…"}}`, where `code` is stable and `message` '
            "says what happened and what to do. Besides the errors each route names below, any "
            "route may answer these:"
        )
        page.table(
            ["Status", "When"],
            [
                [code(status), prose(response.get("description", ""))]
                for status, response in sorted(common.items())
            ],
        )

        page.heading(2, "Endpoints")
        rows = []
        # The index links to the headings below, whose ids follow this heading's.
        anchors = self.operation_anchors(operations)
        for (path, method, op), anchor in zip(operations, anchors):
            first = prose(op.get("summary", "")).split(". ")[0].rstrip(".")
            rows.append([f"[{code(method.upper() + ' ' + path)}](#{anchor})", first])
        page.table(["Route", "What it does"], rows)
        for path, method, op in operations:
            self.operation(path, method, op, common, errors_id)

        page.heading(2, "Schemas")
        page.para("The JSON objects the routes take and answer, by name.")
        self.schema_anchors = []
        for name, s in self.schemas.items():
            anchor = page.heading(3, code(name))
            self.schema_anchors.append((name, anchor))
            if s.get("description"):
                page.para(prose(s["description"]))
            self.schema_body(s)

    def operation_anchors(self, operations):
        """The ids the operations' headings will get, given the headings so far."""
        seen = dict(self.page.seen)
        out = []
        for path, method, _ in operations:
            base = slug(code(f"{method.upper()} {path}"))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.append(base if n == 0 else f"{base}-{n}")
        return out

    def authentication(self):
        page = self.page
        schemes = self.doc.get("components", {}).get("securitySchemes", {})
        needs = self.doc.get("security", [])
        optional = any(not requirement for requirement in needs)
        for name, scheme in schemes.items():
            kind = scheme.get("type", "")
            if kind == "http":
                how = f"`Authorization: {scheme.get('scheme', '').capitalize()} <token>`"
            elif kind == "apiKey":
                how = f"{code(scheme.get('name', ''))} in the {scheme.get('in', '')}"
            else:
                how = kind
            described = prose(scheme.get("description", ""))
            page.para(f"{code(name)}: {how}" + (f", {described}." if described else "."))
        if optional:
            page.para(
                "Requests without credentials are answered where the daemon does not ask for them."
            )

    def error_schema(self, common):
        for response in common.values():
            for spec in response.get("content", {}).values():
                ref = spec.get("schema", {}).get("$ref")
                if ref:
                    return self.ref_name(ref)
        return None

    def operation(self, path, method, op, common, errors_id):
        page = self.page
        page.heading(3, code(f"{method.upper()} {path}"))
        page.para(prose(op.get("summary") or op.get("description") or ""))
        if op.get("description") and op.get("summary"):
            page.para(prose(op["description"]))

        params = op.get("parameters", [])
        if params:
            page.para("**Parameters**")
            page.table(
                ["Name", "In", "Type", "Required", "Description"],
                [
                    [
                        code(p["name"]),
                        p.get("in", ""),
                        self.type_of(p.get("schema")),
                        "yes" if p.get("required") else "",
                        prose(p.get("description", "")),
                    ]
                    for p in params
                ],
            )

        request = op.get("requestBody")
        if request:
            required = ", required" if request.get("required") else ", optional"
            page.para(f"**Request body**{required}: {self.body(request.get('content', {}))}")
            for media, spec in request.get("content", {}).items():
                schema = spec.get("schema", {})
                if media.endswith("json") and "$ref" in schema:
                    target = self.schemas.get(self.ref_name(schema["$ref"]), {})
                    if target.get("properties"):
                        self.schema_body(target)

        responses = op.get("responses", {})
        rows = []
        named = []
        for status, response in responses.items():
            if status in common and response == common[status]:
                continue
            if status.startswith(("4", "5")) and status in common:
                named.append(status)
                continue
            described = prose(response.get("description", ""))
            rows.append([code(status), described, self.body(response.get("content", {}))])
        if rows:
            page.para("**Responses**")
            page.table(["Status", "Description", "Body"], rows)
        errors = f"[the errors any route answers](#{errors_id})"
        if named:
            page.para(f"**Errors**: {', '.join(code(s) for s in named)}, and {errors}.")
        else:
            page.para(f"**Errors**: {errors}.")


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    with open(argv[1], encoding="utf-8") as f:
        doc = json.load(f)
    sys.stdout.write(Renderer(doc).render())


if __name__ == "__main__":
    main(sys.argv)
