"""FAISS files for node/tests/bridge_faiss.rs, written and read by the real faiss library.

    faiss_files.py write DIR N      Fashion-MNIST's first N training images (floats in [0, 1])
                                    as IndexFlatL2, IndexFlatIP, IndexIDMap, IndexIDMap2 and
                                    IndexHNSWFlat (L2, IP) files, plus what they hold as raw
                                    little-endian files and a metadata side file.
    faiss_files.py read INDEX QUERIES K OUT
                                    faiss.read_index(INDEX); its ids, its vectors and the ids
                                    of its K best hits for each query, written to OUT.
"""

import gzip
import json
import os
import sys

import faiss
import numpy as np

IMAGES = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
LABELS = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"


def fashion_mnist(n):
    with gzip.open(IMAGES, "rb") as f:
        raw = f.read()
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(LABELS, "rb") as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    return (images[:n].astype(np.float32) / 255.0), labels[:n]


def write(out, n):
    n = int(n)
    data, labels = fashion_mnist(n + 20)
    vectors, queries = np.ascontiguousarray(data[:n]), np.ascontiguousarray(data[n:])
    d = vectors.shape[1]
    vectors.astype("<f4").tofile(os.path.join(out, "vectors.f32"))
    queries.astype("<f4").tofile(os.path.join(out, "queries.f32"))

    flat_l2 = faiss.IndexFlatL2(d)
    flat_l2.add(vectors)
    faiss.write_index(flat_l2, os.path.join(out, "flat_l2.index"))

    flat_ip = faiss.IndexFlatIP(d)
    flat_ip.add(vectors)
    faiss.write_index(flat_ip, os.path.join(out, "flat_ip.index"))

    # Ids out of order and far apart, as an application's own keys would be.
    rng = np.random.default_rng(7)
    ids = rng.permutation(n).astype(np.int64) * 1_000_003 + 17
    ids.astype("<i8").tofile(os.path.join(out, "ids.i64"))
    id_map = faiss.IndexIDMap(faiss.IndexFlatL2(d))
    id_map.add_with_ids(vectors, ids)
    faiss.write_index(id_map, os.path.join(out, "idmap.index"))
    id_map2 = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    id_map2.add_with_ids(vectors, ids)
    faiss.write_index(id_map2, os.path.join(out, "idmap2.index"))
    with open(os.path.join(out, "labels.jsonl"), "w") as f:
        for i in range(0, n, 3):
            f.write(json.dumps({"id": int(ids[i]), "label": int(labels[i])}) + "\n")

    hnsw_l2 = faiss.IndexHNSWFlat(d, 16)
    hnsw_l2.add(vectors)
    faiss.write_index(hnsw_l2, os.path.join(out, "hnsw_l2.index"))
    hnsw_ip = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
    hnsw_ip.add(vectors)
    faiss.write_index(hnsw_ip, os.path.join(out, "hnsw_ip.index"))


def read(path, queries_path, k, out):
    index = faiss.read_index(path)
    d = index.d
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    ids = (
        faiss.vector_to_array(index.id_map)
        if hasattr(index, "id_map")
        else np.arange(index.ntotal, dtype=np.int64)
    )
    ids.astype("<i8").tofile(os.path.join(out, "ids.i64"))
    inner.reconstruct_n(0, index.ntotal).astype("<f4").tofile(os.path.join(out, "vectors.f32"))
    queries = np.fromfile(queries_path, dtype="<f4").reshape(-1, d)
    _, hits = index.search(queries, int(k))
    with open(os.path.join(out, "read.json"), "w") as f:
        json.dump(
            {
                "type": type(index).__name__,
                "inner": type(inner).__name__,
                "d": d,
                "ntotal": int(index.ntotal),
                "metric": int(index.metric_type),
                "hits": hits.tolist(),
            },
            f,
        )


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(*sys.argv[2:])
    elif sys.argv[1] == "read":
        read(*sys.argv[2:])
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}: write or read")
