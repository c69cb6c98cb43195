"""Writes the first COUNT images of Fashion-MNIST's test set (Debian's dataset-fashion-mnist)
as JSON lines for `ipvec add`: {"id": n, "vector": 784 pixels in [0, 1], "metadata":
{"category": label name, "price": a whole number fixed by n and the category}}.

Usage: items.py COUNT OUT.jsonl"""

import gzip
import hashlib
import json
import struct
import sys

FOLDER = "/usr/share/datasets/fashion-mnist"
CATEGORIES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
# A base price per category, and up to 60 more set by a hash of the item's number.
BASE = [15, 30, 35, 40, 80, 25, 20, 50, 45, 70]


def price(n, label):
    digest = hashlib.sha256(str(n).encode()).digest()
    return BASE[label] + int.from_bytes(digest[:4], "big") % 61


def idx(path):
    """The array of an IDX file: (dimensions, bytes)."""
    with gzip.open(path) as f:
        data = f.read()
    _, kind, rank = struct.unpack(">HBB", data[:4])
    assert kind == 0x08, f"{path}: not unsigned bytes"
    dims = struct.unpack(f">{rank}I", data[4:4 + 4 * rank])
    return dims, data[4 + 4 * rank:]


def main():
    count, out = int(sys.argv[1]), sys.argv[2]
    try:
        (n, rows, cols), pixels = idx(f"{FOLDER}/t10k-images-idx3-ubyte.gz")
        _, labels = idx(f"{FOLDER}/t10k-labels-idx1-ubyte.gz")
    except FileNotFoundError as e:
        sys.exit(f"{e.filename}: install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
    size = rows * cols
    with open(out, "w") as f:
        for i in range(min(count, n)):
            image = pixels[i * size:(i + 1) * size]
            row = {
                "id": i,
                "vector": [round(p / 255, 3) for p in image],
                "metadata": {"category": CATEGORIES[labels[i]], "price": price(i, labels[i])},
            }
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
    print(f"{min(count, n)} items of {size} pixels, {len(CATEGORIES)} categories")


main()
