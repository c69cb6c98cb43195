#!/usr/bin/env python3
"""Baselines for the engine benchmark (node/benches/engine.rs): faiss IndexHNSWFlat and hnswlib.

The Rust bench writes base.npy (float32, n x d) and queries.npy (float32, q x d) into a
directory and runs this script once per library:

    python3 baselines.py --check
    python3 baselines.py --dir DIR --lib faiss|hnswlib --metric l2|cosine --m 16 \
        --ef-construction 128 --efs 16,32,64,128,256,512 --repeats 5 --out results.json

Under cosine, faiss indexes the unit vectors by inner product (and each search normalises its
queries first, inside the timed part); hnswlib uses its own cosine space.

Everything runs on one thread. The script writes the build time, the search time and the
returned ids for each ef; the Rust side computes recall with the same code for every engine.
Memory: VmRSS after loading the data and VmHWM at the end, from /proc/self/status.
"""

import argparse
import json
import sys
import time

INSTALL = "pip install faiss-cpu hnswlib numpy"


def proc_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def version(name, module):
    """The module's __version__, or its package's (hnswlib has no __version__)."""
    found = getattr(module, "__version__", None)
    if found:
        return found
    try:
        from importlib.metadata import version as package_version

        return package_version({"faiss": "faiss-cpu"}.get(name, name))
    except Exception:
        return "?"


def check():
    missing = []
    versions = {}
    for name in ("numpy", "faiss", "hnswlib"):
        try:
            versions[name] = version(name, __import__(name))
        except ImportError:
            missing.append(name)
    if missing:
        print(f"missing Python packages: {', '.join(missing)}; install with: {INSTALL}")
        return 3
    print(json.dumps(versions))
    return 0


def build_faiss(base, m, ef_construction, metric):
    import faiss

    faiss.omp_set_num_threads(1)
    if metric == "cosine":
        base = base.copy()
        faiss.normalize_L2(base)
        index = faiss.IndexHNSWFlat(base.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexHNSWFlat(base.shape[1], m, faiss.METRIC_L2)
    index.hnsw.efConstruction = ef_construction
    index.add(base)
    return index


def search_faiss(index, queries, k, ef, metric):
    import faiss

    index.hnsw.efSearch = ef
    if metric == "cosine":
        queries = queries.copy()
        faiss.normalize_L2(queries)
    _, ids = index.search(queries, k)
    return ids


def build_hnswlib(base, m, ef_construction, metric):
    import hnswlib
    import numpy as np

    index = hnswlib.Index(space=metric, dim=base.shape[1])
    index.init_index(max_elements=base.shape[0], ef_construction=ef_construction, M=m)
    index.set_num_threads(1)
    index.add_items(base, np.arange(base.shape[0]), num_threads=1)
    return index


def search_hnswlib(index, queries, k, ef, metric):
    index.set_ef(ef)
    ids, _ = index.knn_query(queries, k=k, num_threads=1)
    return ids


LIBS = {
    "faiss": (build_faiss, search_faiss),
    "hnswlib": (build_hnswlib, search_hnswlib),
}


def run(args):
    import numpy as np

    base = np.ascontiguousarray(np.load(f"{args.dir}/base.npy"), dtype=np.float32)
    queries = np.ascontiguousarray(np.load(f"{args.dir}/queries.npy"), dtype=np.float32)
    rss_after_load = proc_kb("VmRSS:")
    build, search = LIBS[args.lib]
    start = time.perf_counter()
    index = build(base, args.m, args.ef_construction, args.metric)
    build_s = time.perf_counter() - start
    runs = []
    for ef in [int(e) for e in args.efs.split(",")]:
        search(index, queries[:10], args.k, ef, args.metric)  # warm up
        seconds = float("inf")
        for _ in range(args.repeats):  # keep the fastest pass, as the Rust side does
            start = time.perf_counter()
            ids = search(index, queries, args.k, ef, args.metric)
            seconds = min(seconds, time.perf_counter() - start)
        runs.append({"ef": ef, "seconds": seconds, "ids": np.asarray(ids).astype(int).tolist()})
    result = {
        "lib": args.lib,
        "version": version(args.lib, __import__(args.lib)),
        "build_s": build_s,
        "rss_after_load_kb": rss_after_load,
        "hwm_kb": proc_kb("VmHWM:"),
        "runs": runs,
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the imports")
    parser.add_argument("--dir")
    parser.add_argument("--lib", choices=sorted(LIBS))
    parser.add_argument("--metric", choices=["l2", "cosine"], default="l2")
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=128)
    parser.add_argument("--efs", default="16,32,64,128,256,512")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.check:
        return check()
    if not (args.dir and args.lib and args.out):
        parser.error("--dir, --lib and --out are required (or --check)")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
