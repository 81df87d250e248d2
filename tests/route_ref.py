#!/usr/bin/env python3
"""tests/route_ref.py: an independent NumPy implementation of moekit's routing
policies (docs/routing.md), held against moe/route.c on random logits.

    route_ref.py CHECK_ROUTE WORKDIR

For each policy below it writes random float32 logits (and a bias) as raw
files, runs `CHECK_ROUTE dump ...` (tests/check_route.c's dump mode), and
compares: expert ids exactly, weights to 1e-5, loads and dropped counts
exactly.  The reference computes in float64 and sorts fully (np.argsort,
stable: lower id first on equal keys); moekit computes in float32 with a
partial selection.  Where two keys (or group scores, or a top-p cumulative
sum) lie within 1e-6 of each other the float32 and float64 orders may
legitimately differ: such tokens are reported as ambiguous and skipped, and
the test fails if more than 1% of tokens are ambiguous.  Exit 0 on success,
1 with a message naming the policy and the first differing token.
"""
import os
import subprocess
import sys

import numpy as np

NONE = -1
GAP = 1e-6


def softmax(x):
    m = x.max(axis=1, keepdims=True)
    ex = np.exp(x - m)
    return ex / ex.sum(axis=1, keepdims=True)


def limit_sets(key, set_of, nsets, keep, topn, amb):
    """Masks (to -inf) experts outside the `keep` best sets per token."""
    n, e = key.shape
    score = np.full((n, nsets), -np.inf)
    for s in range(nsets):
        members = key[:, set_of == s]
        srt = np.sort(members, axis=1)[:, ::-1]
        take = min(topn, members.shape[1])
        top = srt[:, :take]
        finite = np.isfinite(top)
        sm = np.where(finite, top, 0.0).sum(axis=1)
        score[:, s] = np.where(finite.any(axis=1), sm, -np.inf)
    order = np.argsort(-score, axis=1, kind="stable")
    kept = np.zeros((n, nsets), dtype=bool)
    np.put_along_axis(kept, order[:, :keep], True, axis=1)
    if keep < nsets:
        ss = np.take_along_axis(score, order, axis=1)
        a, b = ss[:, keep - 1], ss[:, keep]
        amb |= np.isfinite(b) & (np.abs(a - b) <= GAP * np.maximum(1, np.abs(a)))
    allowed = kept[:, set_of]
    return np.where(allowed, key, -np.inf)


def route(l32, pol):
    """Returns ids [n,k], weights [n,k], load [E], dropped [E], ambiguous [n]."""
    l = l32.astype(np.float64)
    n, e = l.shape
    k = pol["k"]
    kind = pol["kind"]
    bias = pol.get("bias")
    b = bias.astype(np.float64) if bias is not None else np.zeros(e)
    groups = pol.get("groups", 1)
    node_of = pol.get("node_of")
    limits = groups > 1 or node_of is not None
    norm = pol.get("norm", 1)
    scaling = pol.get("scaling", 1.0)
    topn = pol.get("topn", 2)
    amb = np.zeros(n, dtype=bool)

    p = softmax(l)
    sig = 1 / (1 + np.exp(-l))
    if kind in ("softmax-topk", "top-p"):
        key = p + b if (bias is not None or limits) else l.copy()
    elif kind == "topk-softmax":
        key = l + b
    else:
        key = sig + b
    if groups > 1:
        key = limit_sets(key, np.arange(e) // (e // groups), groups, pol["gpt"], topn, amb)
    if node_of is not None:
        key = limit_sets(key, np.asarray(node_of), pol["nodes"], pol["max_nodes"], topn, amb)

    order = np.argsort(-key, axis=1, kind="stable")
    skey = np.take_along_axis(key, order, axis=1)
    # near-ties among the first k+1 ranks make the order float-dependent
    upto = min(k + 1, e)
    a, c = skey[:, : upto - 1], skey[:, 1:upto]
    near = np.isfinite(c) & (np.abs(a - c) <= GAP * np.maximum(1, np.abs(a)))
    amb |= near.any(axis=1)

    ids = order[:, :k].copy()
    ids[~np.isfinite(skey[:, :k])] = NONE
    count = (ids != NONE).sum(axis=1)
    if kind == "top-p":
        ps = np.take_along_axis(p, order[:, :k], axis=1)
        cum = np.cumsum(ps, axis=1)
        reach = cum >= pol["top_p"]
        m = np.where(reach.any(axis=1), reach.argmax(axis=1) + 1, k)
        amb |= (np.abs(cum - pol["top_p"]) <= 1e-5).any(axis=1)
        count = np.minimum(count, m)
        for t in range(n):
            ids[t, count[t]:] = NONE

    # weights from unnoised, unbiased scores; den is the normalizer D
    w = np.zeros((n, k))
    den = np.ones(n)
    score = {"softmax-topk": p, "top-p": p, "sigmoid-bias": sig,
             "topk-softmax": None}[kind]
    valid = ids != NONE
    safe = np.where(valid, ids, 0)
    if kind == "topk-softmax":
        lsel = np.where(valid, np.take_along_axis(l, safe, axis=1), -np.inf)
        shift = lsel.max(axis=1)
        ex = np.where(valid, np.exp(lsel - shift[:, None]), 0)
        den = ex.sum(axis=1)
        w = ex / den[:, None]
        gfun = lambda t, i: np.exp(l[t, i] - shift[t])
    else:
        sel = np.where(valid, np.take_along_axis(score, safe, axis=1), 0)
        if norm:
            den = sel.sum(axis=1)
        w = sel / den[:, None]
        gfun = lambda t, i: score[t, i]
    w = w * scaling

    load = np.zeros(e, dtype=np.uint64)
    dropped = np.zeros(e, dtype=np.uint64)
    cf = pol.get("cf", 0.0)
    if cf > 0:
        x = cf * n * k / e
        cap = int(np.ceil(x - 1e-9 * x))
        cnt = np.zeros(e, dtype=np.int64)
        for r in range(k):
            for t in range(n):
                i = ids[t, r]
                if i == NONE:
                    continue
                if cnt[i] < cap:
                    cnt[i] += 1
                    continue
                best = -1
                if pol.get("overflow", "drop") == "reroute":
                    cand = key[t].copy()
                    cand[cnt >= cap] = -np.inf
                    cand[ids[t][ids[t] != NONE]] = -np.inf
                    if np.isfinite(cand).any():
                        best = int(np.argmax(cand))  # first maximum: lower id
                if best >= 0:
                    ids[t, r] = best
                    w[t, r] = gfun(t, best) / den[t] * scaling
                    cnt[best] += 1
                else:
                    dropped[i] += 1
                    ids[t, r] = NONE
                    w[t, r] = 0
        load = cnt.astype(np.uint64)
    else:
        np.add.at(load, ids[ids != NONE], 1)
    return ids, w, load, dropped, amb


def run_case(tool, work, name, l, pol):
    n, e = l.shape
    lpath = os.path.join(work, name + ".logits")
    l.astype("<f4").tofile(lpath)
    args = [tool, "dump", lpath, str(n), str(e), os.path.join(work, name)]
    for key, v in pol.items():
        if key == "bias":
            bpath = os.path.join(work, name + ".bias")
            v.astype("<f4").tofile(bpath)
            args.append("bias=" + bpath)
        elif key == "node_of":
            args.append("node_of=" + ",".join(str(int(x)) for x in v))
        else:
            args.append("%s=%s" % (key, v))
    subprocess.run(args, check=True)
    k = pol["k"]
    pre = os.path.join(work, name)
    ids = np.fromfile(pre + ".ids", dtype="<i4").reshape(n, k)
    w = np.fromfile(pre + ".w", dtype="<f4").reshape(n, k)
    load = np.fromfile(pre + ".load", dtype="<u8")
    dropped = np.fromfile(pre + ".dropped", dtype="<u8")

    rids, rw, rload, rdropped, amb = route(l, pol)
    namb = int(amb.sum())
    if namb > n // 100:
        sys.exit("%s: %d of %d tokens are ambiguous (near-ties); choose other logits"
                 % (name, namb, n))
    ok = ~amb
    bad = np.nonzero(ok & (ids != rids).any(axis=1))[0]
    if bad.size:
        t = bad[0]
        sys.exit("%s: token %d: ids %s, reference %s" % (name, t, ids[t], rids[t]))
    tol = 1e-5 * max(1.0, pol.get("scaling", 1.0))
    bad = np.nonzero(ok & (np.abs(w - rw) > tol).any(axis=1))[0]
    if bad.size:
        t = bad[0]
        sys.exit("%s: token %d: weights %s, reference %s" % (name, t, w[t], rw[t]))
    if namb == 0:
        if not np.array_equal(load, rload):
            sys.exit("%s: loads %s, reference %s" % (name, load, rload))
        if not np.array_equal(dropped, rdropped):
            sys.exit("%s: dropped %s, reference %s" % (name, dropped, rdropped))
    print("ok %-28s n=%d E=%d k=%d ambiguous=%d dropped=%d"
          % (name, n, e, k, namb, int(rdropped.sum())))


def main():
    tool, work = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(20261123)
    n, e = 2000, 64
    l = rng.normal(0, 1.5, size=(n, e)).astype(np.float32)
    # skewed: a per-expert popularity offset, so capacity overflows
    skew = (rng.normal(0, 1.0, size=(n, e)) + np.linspace(1.5, -1.5, e)).astype(np.float32)
    small = rng.normal(0, 1.0, size=(n, 16)).astype(np.float32)
    small_skew = (small + np.linspace(1.0, -1.0, 16)).astype(np.float32)
    bias = rng.normal(0, 0.05, size=e).astype(np.float32)
    ds = rng.normal(0, 1.0, size=(n, e)).astype(np.float32)
    rr = np.arange(e) % 8
    cases = [
        ("softmax_topk_norm", l, {"kind": "softmax-topk", "k": 8}),
        ("softmax_topk_raw", l, {"kind": "softmax-topk", "k": 8, "norm": 0}),
        ("softmax_topk_bias", l, {"kind": "softmax-topk", "k": 8, "bias": bias * 0.1}),
        ("topk_softmax", l, {"kind": "topk-softmax", "k": 4}),
        ("topk_softmax_k1", l, {"kind": "topk-softmax", "k": 1}),
        ("sigmoid_plain", ds, {"kind": "sigmoid-bias", "k": 8, "norm": 0}),
        ("deepseek_groups_bias", ds, {"kind": "sigmoid-bias", "k": 8, "scaling": 2.5,
                                      "bias": bias, "groups": 8, "gpt": 4}),
        ("groups_topn1", l, {"kind": "softmax-topk", "k": 4, "groups": 16, "gpt": 2,
                             "topn": 1}),
        ("nodes_round_robin", l, {"kind": "softmax-topk", "k": 8, "node_of": rr, "nodes": 8,
                                  "max_nodes": 3}),
        ("groups_and_nodes", ds, {"kind": "sigmoid-bias", "k": 6, "groups": 8, "gpt": 4,
                                  "node_of": rr, "nodes": 8, "max_nodes": 2}),
        ("capacity_drop", small_skew, {"kind": "softmax-topk", "k": 2, "cf": 1.0}),
        ("capacity_reroute", small_skew, {"kind": "softmax-topk", "k": 2, "cf": 1.0,
                                          "overflow": "reroute"}),
        ("capacity_reroute_raw", skew, {"kind": "softmax-topk", "k": 8, "cf": 1.25,
                                        "norm": 0, "overflow": "reroute"}),
        ("capacity_topk_softmax", skew, {"kind": "topk-softmax", "k": 8, "cf": 0.8,
                                         "overflow": "reroute"}),
        ("capacity_drop_k8", skew, {"kind": "topk-softmax", "k": 8, "cf": 1.0}),
        ("top_p_norm", small, {"kind": "top-p", "k": 4, "top_p": 0.6}),
        ("top_p_raw", l, {"kind": "top-p", "k": 8, "top_p": 0.5, "norm": 0}),
    ]
    for name, logits, pol in cases:
        run_case(tool, work, name, logits, pol)


if __name__ == "__main__":
    main()
