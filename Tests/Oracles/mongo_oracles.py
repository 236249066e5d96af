"""Random documents and filters, answered by two independent implementations
of MongoDB's query language (mongomock and montydb), for the store's
differential test (Tests/DocumentStoreTests/OracleTests.swift).

Only the filters on which the two oracles agree become cases; where they
disagree the case is left out and counted (docs/document-store.md says which
answer the store gives there, and why).

    python mongo_oracles.py OUT.json SEED DOCUMENTS FILTERS

Numbers 0 and 1 never appear in documents or filters: Python treats
True == 1 and False == 0, so an oracle could match a boolean to a number.
"""

import json
import random
import sys

import mongomock
from montydb import MontyClient

FIELDS = ["a", "b", "c"]
PATHS = ["a", "b", "c", "a.b", "a.c", "b.a", "a.b.c", "a.0", "b.1"]
INTS = [-3, -2, 2, 3, 5, 7]
DOUBLES = [2.5, -1.5, 3.0, 7.25]
STRINGS = ["x", "y", "ab", ""]


def scalar(r):
    kind = r.randrange(5)
    if kind == 0:
        return None
    if kind == 1:
        return r.choice(INTS)
    if kind == 2:
        return r.choice(DOUBLES)
    if kind == 3:
        return r.choice(STRINGS)
    return r.choice([True, False])


def value(r, depth):
    kind = r.randrange(10)
    if depth < 2 and kind == 0:
        return [value(r, depth + 1) for _ in range(r.randrange(4))]
    if depth < 2 and kind == 1:
        return obj(r, depth + 1)
    return scalar(r)


def obj(r, depth):
    out = {}
    for name in r.sample(FIELDS, r.randrange(len(FIELDS) + 1)):
        out[name] = value(r, depth)
    return out


def predicate(r):
    op = r.choice(["eq", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not"])
    if op == "eq":
        return value(r, 1)
    if op in ("$in", "$nin"):
        return {op: [value(r, 1) for _ in range(r.randrange(1, 4))]}
    if op == "$exists":
        return {op: r.choice([True, False])}
    if op == "$not":
        inner = r.choice(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"])
        return {op: {inner: scalar(r)}}
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return {op: scalar(r)}
    return {op: value(r, 1)}


def filter_(r, depth=0):
    kind = r.randrange(8)
    if depth == 0 and kind == 0:
        return {r.choice(["$and", "$or"]): [filter_(r, 1) for _ in range(r.randrange(1, 3))]}
    out = {}
    for path in r.sample(PATHS, r.randrange(1, 3)):
        out[path] = predicate(r)
    return out


def main():
    out_path, seed, n_docs, n_filters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    r = random.Random(seed)
    documents = []
    for i in range(n_docs):
        d = {"_id": 10 + i}
        d.update(obj(r, 0))
        documents.append(d)
    mock = mongomock.MongoClient().db.c
    monty = MontyClient(":memory:").db.c
    mock.insert_many([json.loads(json.dumps(d)) for d in documents])
    monty.insert_many([json.loads(json.dumps(d)) for d in documents])
    cases, disagreements, failures = [], [], 0
    for _ in range(n_filters):
        f = filter_(r)
        try:
            a = sorted(d["_id"] for d in mock.find(json.loads(json.dumps(f))))
            b = sorted(d["_id"] for d in monty.find(json.loads(json.dumps(f))))
        except Exception:  # an oracle that cannot answer gives no case
            failures += 1
            continue
        if a == b:
            cases.append({"filter": f, "ids": a})
        else:
            disagreements.append({"filter": f, "mongomock": a, "montydb": b})
    with open(out_path, "w") as fh:
        json.dump({"documents": documents, "cases": cases, "disagreements": disagreements,
                   "oracle_failures": failures}, fh)
    print(f"{len(cases)} cases; the oracles disagreed on {len(disagreements)} filters and could not answer "
          f"{failures}", file=sys.stderr)


if __name__ == "__main__":
    main()
