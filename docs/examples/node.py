"""The examples' window on the daemon of the repository in $REPO: its HTTP API (docs/api.md)
with the repository's token, from the Python standard library alone.

`python3 node.py ready` exits 0 once the daemon answers /ready with 200."""

import json
import os
import sys
import time
import urllib.error
import urllib.request


def _repo():
    return os.environ["REPO"]


def url():
    with open(os.path.join(_repo(), "api")) as f:
        return f.read().strip()


def _token():
    try:
        with open(os.path.join(_repo(), "keys", "api.token")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def call(method, path, body=None):
    """Sends one request; the answer's JSON. Raises on any status but 200."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url() + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    token = _token()
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {path}: {e.code} {e.read().decode(errors='replace')}")


def search(name, body):
    """One search; (its hits, the seconds it took)."""
    started = time.perf_counter()
    answer = call("POST", f"/v1/collections/{name}/search", body)
    return answer["hits"], time.perf_counter() - started


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


if __name__ == "__main__" and sys.argv[1:] == ["ready"]:
    try:
        with urllib.request.urlopen(url() + "/ready", timeout=5) as answer:
            sys.exit(0 if answer.status == 200 else 1)
    except (OSError, urllib.error.URLError):
        sys.exit(1)
