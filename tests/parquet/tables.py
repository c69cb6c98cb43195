"""pyarrow's side of node/tests/bridge_parquet.rs: writes the Parquet tables ipvec imports
(with the points each must become, as JSON lines), and reads back the tables ipvec exports.

    tables.py write DIR N        tables of the first N Fashion-MNIST training images
    tables.py read FILE          one JSON line per row, after a header line with the schema
    tables.py bad DIR            tables ipvec must refuse
    tables.py bench FILE N DIM   a seeded table, for the bench
    tables.py time FILE          seconds pyarrow.parquet.read_table takes

Vectors are printed as the bit patterns of their float32 components, so that the test
compares them bit for bit.
"""

import gzip
import json
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

IMAGES = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
LABELS = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"
NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat",
         "sandal", "shirt", "sneaker", "bag", "ankle boot"]


def fashion(n):
    with gzip.open(IMAGES, "rb") as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 784)[:n]
    with gzip.open(LABELS, "rb") as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)[:n]
    return (images.astype(np.float32) / np.float32(255.0)), labels.astype(np.int64)


def bits(vector):
    return np.asarray(vector, dtype=np.float32).view(np.uint32).tolist()


def expect(path, ids, vectors, metadata):
    with open(path, "w") as f:
        for i, v, m in zip(ids, vectors, metadata):
            m = {k: x for k, x in m.items() if x is not None}
            f.write(json.dumps({"id": i, "bits": bits(v), "metadata": m}) + "\n")


def write(out, n):
    vectors, labels = fashion(n)
    # Integer ids, fixed_size_list<float32>[784], metadata of every kind.
    ids = [int(i) * 7 + 3 for i in range(n)]
    means = vectors.mean(axis=1).astype(np.float64)
    meta = []
    for i in range(n):
        label = int(labels[i])
        meta.append({
            "label": label,
            "name": NAMES[label],
            "mean": None if i % 5 == 0 else float(means[i]),
            "bright": bool(means[i] > 0.3),
            "tags": [NAMES[label], "fashion"] if i % 3 else None,
            "shape": {"rows": 28, "cols": 28, "note": None if i % 2 else "even"},
            "category": NAMES[label],
        })
    vector_type = pa.list_(pa.float32(), 784)
    table = pa.table({
        "id": pa.array(ids, pa.uint64()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 784),
        "label": pa.array([m["label"] for m in meta], pa.int64()),
        "name": pa.array([m["name"] for m in meta], pa.string()),
        "mean": pa.array([m["mean"] for m in meta], pa.float64()),
        "bright": pa.array([m["bright"] for m in meta], pa.bool_()),
        "tags": pa.array([m["tags"] for m in meta], pa.list_(pa.string())),
        "shape": pa.array([m["shape"] for m in meta],
                          pa.struct([("rows", pa.int32()), ("cols", pa.int32()),
                                     ("note", pa.string())])),
        "category": pa.array([m["category"] for m in meta]).dictionary_encode(),
    })
    assert table.schema.field("vector").type == vector_type
    pq.write_table(table, f"{out}/fixed.parquet", row_group_size=500)
    for m in meta:
        m["shape"] = {k: v for k, v in m["shape"].items() if v is not None}
    expect(f"{out}/fixed.jsonl", ids, vectors, meta)

    # String ids, a plain list<float32>, int32 and float32 metadata.
    ids = [f"img-{i:05d}" for i in range(n)]
    small = pa.table({
        "key": pa.array(ids, pa.string()),
        "embedding": pa.array([v for v in vectors], pa.list_(pa.float32())),
        "label": pa.array(labels, pa.int32()),
        "half": pa.array(np.full(n, 0.5, dtype=np.float32)),
    })
    pq.write_table(small, f"{out}/list.parquet")
    expect(f"{out}/list.jsonl", ids, vectors,
           [{"label": int(l), "half": 0.5} for l in labels])

    # int64 ids and large_list<float64> vectors, converted to float32.
    wide = vectors.astype(np.float64) + 1e-9
    table = pa.table({
        "id": pa.array(range(n), pa.int64()),
        "vector": pa.array([v for v in wide], pa.large_list(pa.float64())),
    })
    pq.write_table(table, f"{out}/double.parquet", compression="zstd")
    expect(f"{out}/double.jsonl", list(range(n)), wide.astype(np.float32), [{}] * n)


def bad(out):
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    good = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 3)
    pq.write_table(pa.table({"idx": pa.array([1, 2, 3, 4], pa.uint64()), "vector": good}),
                   f"{out}/no_id.parquet")
    pq.write_table(pa.table({"id": pa.array([1, 2, 3, 4], pa.uint64()),
                             "vector": pa.array(["a", "b", "c", "d"])}),
                   f"{out}/text_vector.parquet")
    pq.write_table(pa.table({"id": pa.array([1, 2, -3, 4], pa.int64()), "vector": good}),
                   f"{out}/negative_id.parquet")
    lists = pa.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], None, [9.0, 10.0, 11.0]],
                     pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": pa.array([1, 2, 3, 4], pa.uint64()), "vector": lists}),
                   f"{out}/null_vector.parquet")
    ragged = pa.array([[0.0, 1.0, 2.0], [3.0, 4.0], [6.0, 7.0, 8.0], [9.0, 10.0, 11.0]],
                      pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": pa.array([1, 2, 3, 4], pa.uint64()), "vector": ragged}),
                   f"{out}/ragged.parquet")
    nan = pa.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, float("nan"), 8.0], [9.0, 10.0, 11.0]],
                   pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": pa.array([1, 2, 3, 4], pa.uint64()), "vector": nan}),
                   f"{out}/nan.parquet")
    # A NaN far into the file: the first record batch reads well.
    late = np.arange(3000 * 3, dtype=np.float32).reshape(3000, 3)
    late[2500, 1] = np.nan
    late_vectors = pa.FixedSizeListArray.from_arrays(pa.array(late.reshape(-1)), 3)
    pq.write_table(pa.table({"id": pa.array(range(3000), pa.uint64()), "vector": late_vectors}),
                   f"{out}/late_nan.parquet", row_group_size=1000)
    pq.write_table(pa.table({"id": pa.array([1, 2, 3, 4], pa.uint64()), "vector": good,
                             "blob": pa.array([b"x", b"y", b"z", b"w"])}),
                   f"{out}/binary_metadata.parquet")


def read(path):
    table = pq.read_table(path)
    schema = table.schema
    kv = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()
          if k.decode().startswith("ipvec.")}
    print(json.dumps({"columns": {f.name: str(f.type) for f in schema}, "ipvec": kv}))
    rest = kv.get("ipvec.rest_column")
    ids = table.column("id").to_pylist()
    vectors = table.column("vector").combine_chunks()
    flat = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    dim = len(flat) // max(len(ids), 1)
    columns = {name: table.column(name).to_pylist() for name in table.column_names
               if name not in ("id", "vector")}
    for row, i in enumerate(ids):
        m = {}
        for name, values in columns.items():
            if name == rest:
                if values[row] is not None:
                    m.update(json.loads(values[row]))
            elif values[row] is not None:
                m[name] = values[row]
        print(json.dumps({"id": i, "bits": bits(flat[row * dim:(row + 1) * dim]),
                          "metadata": m}))


def bench(path, n, dim):
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    table = pa.table({
        "id": pa.array(np.arange(n, dtype=np.uint64)),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
    })
    pq.write_table(table, path)


def timed(path):
    start = time.perf_counter()
    table = pq.read_table(path)
    seconds = time.perf_counter() - start
    print(json.dumps({"rows": table.num_rows, "seconds": seconds}))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "write":
        write(sys.argv[2], int(sys.argv[3]))
    elif command == "read":
        read(sys.argv[2])
    elif command == "bad":
        bad(sys.argv[2])
    elif command == "bench":
        bench(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif command == "time":
        timed(sys.argv[2])
    else:
        sys.exit(f"unknown command {command}")
