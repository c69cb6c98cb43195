"""More like this and recommendations over the `items` collection: an item's neighbours by
its stored vector; a user as the mean vector of the items they liked, answered with items
they have not seen, with and without filters on category and price.

Usage: recommend.py NAME ITEMS.jsonl"""

import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import node  # noqa: E402

# Who liked what: most of a favourite category and a few of another (the first items of
# each), and the price range they want in that other category.
USERS = {
    "ana": ("Sneaker", 8, "Bag", 2, (40, 60)),
    "ben": ("Dress", 8, "Trouser", 2, (30, 45)),
    "eva": ("Ankle boot", 8, "Coat", 2, (60, 100)),
}
K = 20


def vector(name, item):
    point = node.call("GET", f"/v1/collections/{name}/points/{urllib.parse.quote(str(item))}")
    return point["vector"]


def show(hit):
    meta = hit["metadata"]
    return f"#{hit['id']} {meta['category']} ${meta['price']} ({hit['score']:.3f})"


def main():
    name, items = sys.argv[1], sys.argv[2]
    category = {}
    with open(items) as f:
        for line in f:
            row = json.loads(line)
            category[row["id"]] = row["metadata"]["category"]

    print("== more like this")
    item = 0
    hits, _ = node.search(name, {
        "vector": vector(name, item), "k": 10,
        "filter": {"must_not": [{"ids": [item]}]},
    })
    same = sum(h["metadata"]["category"] == category[item] for h in hits)
    print(f"item #{item} ({category[item]}): {same}/{len(hits)} of its 10 nearest are {category[item]}s")
    for hit in hits[:5]:
        print(f"  {show(hit)}")
    # Latency of a search by a stored item's vector (the vector fetched first, not timed).
    took = []
    for other in range(1, 41):
        took.append(node.search(name, {
            "vector": vector(name, other), "k": 10,
            "filter": {"must_not": [{"ids": [other]}]},
        })[1])
    print(f"more-like-this latency over {len(took)} items (k=10): "
          f"p50 {node.percentile(took, 50) * 1000:.1f} ms, p95 {node.percentile(took, 95) * 1000:.1f} ms")

    print(f"== recommendations (top {K}, items already liked left out)")
    shares = []
    for user, (favourite, many, other, few, (low, high)) in USERS.items():
        liked = [i for i in category if category[i] == favourite][:many]
        liked += [i for i in category if category[i] == other][:few]
        vectors = [vector(name, i) for i in liked]
        taste = [sum(column) / len(vectors) for column in zip(*vectors)]
        unseen = {"must_not": [{"ids": liked}]}
        hits, _ = node.search(name, {"vector": taste, "k": K, "filter": unseen})
        share = sum(h["metadata"]["category"] == favourite for h in hits) / len(hits)
        shares.append(share)
        print(f"{user} liked {many} {favourite} and {few} {other}: "
              f"{share:.0%} of {len(hits)} recommendations are {favourite}")
        for hit in hits[:3]:
            print(f"  {show(hit)}")
        # The same taste, asked for the other category in a price range.
        window = {"gte": low, "lte": high}
        hits, _ = node.search(name, {"vector": taste, "k": 3, "filter": {
            "must": [{"key": "category", "match": other},
                     {"key": "price", "range": window}],
            "must_not": [{"ids": liked}],
        }})
        print(f"  {other} priced {low} to {high}: " + ", ".join(show(h) for h in hits))
    print(f"share of recommendations in the user's favourite category: "
          f"{sum(shares) / len(shares):.2f} (mean over {len(shares)} users)")


main()
