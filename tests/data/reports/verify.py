#!/usr/bin/env python3
"""tests/data/reports/verify.py: independent checks of what `moekit report`,
`moekit export-timeline` and `moekit compare` wrote, against the store read
with Python's sqlite3 (not through moekit).

    verify.py figures DB OUTDIR FORMATS [RUN,...]  every figure rendered and
                                                   valid; every .dat holds the
                                                   store's numbers
    verify.py timeline DB RUN FILE.json            events match the spans
                                                   (or stages) and lie in the
                                                   run's time span
    verify.py compare DB FILE.json RUN RUN...      values and deltas against
                                                   the store

Numbers: the store hands moekit doubles as text with 15 significant digits,
so a number is "the same" when it agrees to a relative 1e-13 (sums: 1e-12).
Exit 0 when all checks pass, 1 with a message per failure.
"""
import json
import math
import os
import re
import shlex
import sqlite3
import struct
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def close(a, b, rel=1e-13):
    if isinstance(a, float) and math.isnan(a):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if b is None:
        return False
    return abs(a - b) <= rel * max(abs(a), abs(b)) + 1e-300


def num(tok):
    return float(tok)


def read_dat(path):
    """Rows of a .dat file: a list of blocks (split by two blank lines), each
    a list of token lists (quoted strings kept together, quotes removed)."""
    blocks, cur, blank = [], [], 0
    with open(path) as f:
        header = []
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                header.append(line)
                continue
            if line.strip() == "":
                blank += 1
                if blank == 2 and cur:
                    blocks.append(cur)
                    cur = []
                continue
            blank = 0
            cur.append(shlex.split(line))
    if cur:
        blocks.append(cur)
    if not any(h.startswith("# columns:") for h in header):
        fail(f"{path}: no '# columns:' header")
    if not any(h.startswith("# units:") for h in header):
        fail(f"{path}: no '# units:' header")
    return blocks


def check_png(path, w, h):
    with open(path, "rb") as f:
        head = f.read(33)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return fail(f"{path}: not a PNG (signature or IHDR)")
    pw, ph = struct.unpack(">II", head[16:24])
    if (pw, ph) != (w, h):
        fail(f"{path}: {pw}x{ph} pixels, the script asks for {w}x{h}")


def check_svg(path):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        return fail(f"{path}: not XML: {e}")
    if not root.tag.endswith("svg"):
        fail(f"{path}: root element {root.tag}, expected svg")
    if len(list(root.iter())) < 20:
        fail(f"{path}: almost empty SVG")


def check_pdf(path):
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"%PDF-") or b"%%EOF" not in data[-1024:]:
        fail(f"{path}: not a PDF (signature or %%EOF)")


def done_runs(db, only):
    rows = db.execute("SELECT id, kind, model FROM runs WHERE status = 'done' ORDER BY id")
    return [r for r in rows if not only or r[0] in only]


def expect_rows(path, got, want, what, rel=1e-13):
    if len(got) != len(want):
        return fail(f"{path}: {len(got)} rows of {what}, the store has {len(want)}")
    for i, (g, w) in enumerate(zip(got, want)):
        for gv, wv in zip(g, w):
            if isinstance(wv, str) or wv is None and isinstance(gv, str):
                ok = gv == (wv if wv is not None else "")
            else:
                ok = close(gv, wv, rel)
            if not ok:
                return fail(f"{path}: row {i + 1} of {what}: {g} against the store's {w}")


def figures(dbpath, out, formats, only):
    db = sqlite3.connect(dbpath)
    runs = done_runs(db, only)
    ids = [r[0] for r in runs]
    fmts = formats.split(",")
    names = [n[:-3] for n in os.listdir(out) if n.endswith(".gp")]
    if not names:
        fail(f"{out}: no figure scripts")

    # Every figure: rendered in each format, the size its script asks for.
    for n in names:
        gp = open(os.path.join(out, n + ".gp")).read()
        m = re.search(r"eval term\(fmt, (\d+), (\d+)\)", gp)
        if not m:
            fail(f"{n}.gp: no terminal size")
            continue
        w, h = int(m.group(1)), int(m.group(2))
        for fmt in fmts:
            p = os.path.join(out, f"{n}.{fmt}")
            if not os.path.exists(p) or os.path.getsize(p) == 0:
                fail(f"{p}: not rendered")
            elif fmt == "png":
                check_png(p, w, h)
            elif fmt == "svg":
                check_svg(p)
            else:
                check_pdf(p)
        if not os.path.exists(os.path.join(out, n + ".dat")):
            fail(f"{n}: script without data file")

    # Which figures the runs call for.
    def has(table, rid):
        return db.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", (rid,)).fetchone()[0] > 0

    want = set()
    if any(has("layers", i) for i in ids):
        want.add("breakdown")
    if any(has("gpus", i) for i in ids):
        want.add("gpus")
    for i in ids:
        if has("spans", i):
            want.add(f"timeline_run{i}")
        if has("link_samples", i):
            want.add(f"links_run{i}")
        if has("experts", i):
            want.add(f"experts_run{i}")
    if any(has("stages", i) for i in ids):
        want.add("stages")
    for w_ in sorted(want):
        if w_ not in names:
            fail(f"figure {w_} missing (the runs have its data)")

    # breakdown.dat: each run's layers in store order.
    if "breakdown" in names:
        blocks = read_dat(os.path.join(out, "breakdown.dat"))
        lruns = [i for i in ids if has("layers", i)]
        if len(blocks) != len(lruns):
            fail(f"breakdown.dat: {len(blocks)} blocks, {len(lruns)} runs with layers")
        for rid, blk in zip(lruns, blocks):
            got = [[num(t[0]), num(t[1]), t[2]] + [num(x) for x in t[3:9]] for t in blk]
            want_rows = [[float(rid), float(r[0]), r[1]] + list(r[2:]) for r in db.execute(
                "SELECT layer, phase, dispatch_s, compute_s, combine_s, other_s, exposed_s, "
                "total_s FROM layers WHERE run_id = ? ORDER BY rowid", (rid,))]
            expect_rows("breakdown.dat", got, want_rows, f"run {rid}")

    if "gpus" in names:
        blocks = read_dat(os.path.join(out, "gpus.dat"))
        gruns = [i for i in ids if has("gpus", i)]
        if len(blocks) != len(gruns):
            fail(f"gpus.dat: {len(blocks)} blocks, {len(gruns)} runs with gpus")
        for rid, blk in zip(gruns, blocks):
            got = [[num(x) for x in t] for t in blk]
            want_rows = [[float(rid)] + [float(v) for v in r] for r in db.execute(
                "SELECT gpu, node, tokens, busy_s, idle_s, compute_s, bytes_sent, "
                "bytes_received FROM gpus WHERE run_id = ? ORDER BY rowid", (rid,))]
            expect_rows("gpus.dat", got, want_rows, f"run {rid}")

    for rid in ids:
        n = f"experts_run{rid}"
        if n in names:
            got = [[num(x) for x in t] for t in read_dat(os.path.join(out, n + ".dat"))[0]]
            want_rows = [[float(v) for v in r] for r in db.execute(
                "SELECT layer, expert, sum(tokens), sum(dropped), count(*) FROM experts "
                "WHERE run_id = ? GROUP BY layer, expert ORDER BY layer, expert", (rid,))]
            expect_rows(n + ".dat", got, want_rows, "experts", 1e-12)

        n = f"links_run{rid}"
        if n in names:
            rows = read_dat(os.path.join(out, n + ".dat"))[0]
            links = {r[0]: (r[1], r[2]) for r in db.execute(
                "SELECT link, name, kind FROM links WHERE run_id = ?", (rid,))}
            got = sorted((int(t[1]), num(t[4]), num(t[6])) for t in rows)
            want_rows = sorted((r[0], r[1], r[2]) for r in db.execute(
                "SELECT link, t_s, utilization FROM link_samples WHERE run_id = ?", (rid,)))
            expect_rows(n + ".dat", [list(g) for g in got], [list(w) for w in want_rows],
                        "samples")
            for t in rows:
                if (t[2], t[3]) != links.get(int(t[1]), ("", "")):
                    fail(f"{n}.dat: link {t[1]} named {t[2]} ({t[3]}), store says "
                         f"{links.get(int(t[1]))}")
                    break
                if num(t[5]) < num(t[4]):
                    fail(f"{n}.dat: a sample ends before it starts: {t}")
                    break
            # Rows in figure order; the links of one kind side by side.
            idx = [int(t[0]) for t in rows]
            if idx != sorted(idx):
                fail(f"{n}.dat: rows not in figure (link_index) order")
            order = []
            for t in rows:
                if not order or order[-1] != t[3]:
                    order.append(t[3])
            if len(order) != len(set(order)):
                fail(f"{n}.dat: link kinds are not grouped: {order[:8]} ...")

        n = f"timeline_run{rid}"
        if n in names:
            rows = read_dat(os.path.join(out, n + ".dat"))[0]
            stored = sorted((t[1], t[2], t[3], num(t[4]), num(t[5])) for t in rows if t[6] == "0")
            want_rows = sorted((r[0], r[2] or "other", r[1], r[3], r[4]) for r in db.execute(
                "SELECT track, name, cat, start_s, dur_s FROM spans WHERE run_id = ?", (rid,)))
            expect_rows(n + ".dat", [list(s) for s in stored], [list(w) for w in want_rows],
                        "spans")
            t0 = min(w[3] for w in want_rows)
            t1 = max(w[3] + w[4] for w in want_rows)
            for t in rows:
                if t[6] != "1":
                    continue
                a, d = num(t[4]), num(t[5])
                if a < t0 - 1e-12 or a + d > t1 + 1e-12 or d <= 0:
                    fail(f"{n}.dat: idle gap {t} outside the run's [{t0}, {t1}]")
                for s in want_rows:
                    if s[0] == t[1] and s[3] < a + d - 1e-12 and a < s[3] + s[4] - 1e-12:
                        fail(f"{n}.dat: idle gap {t} overlaps span {s}")
                        break

    if "stages" in names:
        blocks = read_dat(os.path.join(out, "stages.dat"))
        sruns = [i for i in ids if has("stages", i)]
        for rid, blk in zip(sruns, blocks):
            got = [[t[2]] + [num(x) for x in t[3:]] for t in blk]
            want_rows = [[r[0]] + [float(v) for v in r[1:]] for r in db.execute(
                "SELECT stage, reps, median_s, p10_s, p90_s, min_s, gflops, tokens FROM stages "
                "WHERE run_id = ? ORDER BY rowid", (rid,))]
            expect_rows("stages.dat", got, want_rows, f"run {rid}")
    if "gflops" in names:
        got, want_rows = [], []
        for blk in read_dat(os.path.join(out, "gflops.dat")):
            xs = [num(t[3]) for t in blk]
            if xs != sorted(xs):
                fail("gflops.dat: a block is not sorted by tokens per expert")
            if len({t[1] for t in blk}) != 1:
                fail("gflops.dat: a block mixes stages")
            got += [[int(t[0]), t[1], num(t[2]), num(t[3]), num(t[4]), num(t[5])] for t in blk]
        for rid in ids:
            inp = json.loads(db.execute("SELECT inputs FROM runs WHERE id = ?",
                                        (rid,)).fetchone()[0])
            for st, tok, gf, med in db.execute(
                    "SELECT stage, tokens, gflops, median_s FROM stages WHERE run_id = ? AND "
                    "gflops > 0 AND tokens > 0 ORDER BY rowid", (rid,)):
                tpe = tok * inp["top_k"] / inp["experts"] if "top_k" in inp else tok
                want_rows.append([rid, st, tok, tpe, gf, med])
        expect_rows("gflops.dat", sorted(got), sorted(want_rows), "stage rows with GFLOP/s")

    def sums(rid):
        return db.execute(
            "SELECT sum(total_s), sum(dispatch_bytes + combine_bytes), max(imbalance), "
            "sum(dropped), sum(dispatch_s + combine_s) FROM layers WHERE run_id = ?",
            (rid,)).fetchone()

    def metric(rid, name):
        r = db.execute("SELECT value FROM metrics WHERE run_id = ? AND name = ?",
                       (rid, name)).fetchone()
        return r[0] if r else None

    for n in names:
        if n.startswith("routing"):
            for t in read_dat(os.path.join(out, n + ".dat"))[0]:
                rid = int(t[0])
                s = sums(rid)
                got = [num(x) for x in t[2:7]]
                step = metric(rid, "step_time_s")
                expect_rows(n + ".dat", [got], [[s[0], s[1], s[2], s[3],
                                                 step if step is not None else float("nan")]],
                            f"run {rid}", 1e-12)
        if n.startswith("scaling"):
            xs = []
            for blk in read_dat(os.path.join(out, n + ".dat")):
                last = None
                for t in blk:
                    rid = int(t[1])
                    s = sums(rid)
                    step = metric(rid, "step_time_s")
                    expect_rows(n + ".dat", [[num(t[2]), num(t[3])]],
                                [[s[4], step if step is not None else s[0]]], f"run {rid}", 1e-12)
                    if last is not None and num(t[0]) < last:
                        fail(f"{n}.dat: not sorted by x")
                    last = num(t[0])
                    xs.append(num(t[0]))
            if len(set(xs)) < 2:
                fail(f"{n}.dat: fewer than two x values")
        if n == "simmeas":
            for blk in read_dat(os.path.join(out, "simmeas.dat")):
                for t in blk:
                    p, s, q = int(t[0]), int(t[1]), t[2]
                    if q.startswith("layer "):
                        _, layer, phase = q.split(" ", 2)
                        get = lambda rid: db.execute(
                            "SELECT total_s FROM layers WHERE run_id = ? AND layer = ? AND "
                            "phase = ?", (rid, int(layer), phase)).fetchone()[0]
                        sv = get(s)
                        if has("layers", p):
                            mv = get(p)
                        else:
                            # a profile run: its one layer's forward, total_s
                            mv = metric(p, "total_s")
                            if json.loads(db.execute("SELECT inputs FROM runs WHERE id = ?",
                                                     (p,)).fetchone()[0]).get("layer") != \
                                    int(layer):
                                fail(f"simmeas.dat: run {p} measured another layer than {q}")
                    else:
                        mv, sv = metric(p, q), metric(s, q)
                    expect_rows("simmeas.dat", [[num(t[3]), num(t[4])]], [[mv, sv]], q)
                    if abs(num(t[5]) - 100 * (sv - mv) / mv) > 1e-4 * max(1, abs(num(t[5]))):
                        fail(f"simmeas.dat: error of {q} is {t[5]} %, expected "
                             f"{100 * (sv - mv) / mv}")

    # index.html: written, every image it shows exists, every run listed.
    page = os.path.join(out, "index.html")
    if not os.path.exists(page):
        fail("index.html missing")
    else:
        class P(HTMLParser):
            imgs, ids_ = [], []

            def handle_starttag(self, tag, attrs):
                a = dict(attrs)
                if tag == "img":
                    self.imgs.append(a.get("src"))
                if tag == "h3" and a.get("id", "").startswith("run"):
                    self.ids_.append(int(a["id"][3:]))
        p = P()
        p.feed(open(page).read())
        for src in p.imgs:
            if not os.path.exists(os.path.join(out, src)):
                fail(f"index.html shows {src}, which does not exist")
        if len(p.imgs) != len(names):
            fail(f"index.html shows {len(p.imgs)} figures, {len(names)} were drawn")
        if p.ids_ != ids:
            fail(f"index.html lists runs {p.ids_}, expected {ids}")
        newest = max(os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)
                     if not f.startswith("."))
        if os.path.getmtime(page) < newest - 1e-6:
            fail("index.html is not the last file written")
    for f in os.listdir(out):
        if f.endswith(".tmp"):
            fail(f"temporary file {f} left behind")


def timeline(dbpath, rid, path):
    db = sqlite3.connect(dbpath)
    rid = int(rid)
    doc = json.load(open(path))
    ev = doc["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in ev
             if e["ph"] == "M" and e["name"] == "thread_name"}
    xs = [e for e in ev if e["ph"] == "X"]
    spans = list(db.execute("SELECT track, name, cat, start_s, dur_s FROM spans WHERE run_id = ?",
                            (rid,)))
    if spans:
        t1 = max(s[3] + s[4] for s in spans)
        got = sorted((names.get((e["pid"], e["tid"]), "?"), e["name"], e["cat"],
                      e["ts"] / 1e6, e["dur"] / 1e6) for e in xs)
        want = sorted(spans)
        expect_rows(path, [list(g) for g in got], [list(w) for w in want], "spans")
    else:
        stages = list(db.execute("SELECT stage, median_s FROM stages WHERE run_id = ? "
                                 "AND stage != 'total' ORDER BY rowid", (rid,)))
        t1 = sum(s[1] for s in stages)
        t = 0.0
        if len(xs) != len(stages):
            fail(f"{path}: {len(xs)} events for {len(stages)} stages")
        for e, s in zip(xs, stages):
            if e["name"] != s[0] or not close(e["ts"], t * 1e6, 1e-9) or \
                    not close(e["dur"], s[1] * 1e6, 1e-12):
                fail(f"{path}: stage event {e} is not {s} at {t} s")
            t += s[1]
    for e in xs:
        if e["ts"] < 0 or e["dur"] < 0 or (e["ts"] + e["dur"]) / 1e6 > t1 * (1 + 1e-12):
            fail(f"{path}: event {e} outside the run's time span [0, {t1}] s")
        if (e["pid"], e["tid"]) not in names:
            fail(f"{path}: event on a track without a name: {e}")
    if len(set(names.values())) != len(names):
        fail(f"{path}: two tracks share a name")
    for e in ev:
        if e["ph"] == "C" and e["ts"] < 0:
            fail(f"{path}: counter before the start: {e}")


def compare(dbpath, path, *ids):
    db = sqlite3.connect(dbpath)
    ids = [int(i) for i in ids]
    rows = json.load(open(path))["compare"]
    first = ids[0]

    def metric(rid, name):
        r = db.execute("SELECT value FROM metrics WHERE run_id = ? AND name = ?",
                       (rid, name)).fetchone()
        return r[0] if r else None

    seen_metric = 0
    for r in rows:
        if r["kind"] == "metric":
            seen_metric += 1
            vals = [metric(i, r["quantity"]) for i in ids]
        elif r["kind"] == "layers":
            agg, col = r["quantity"].split(" ")
            fn = "max" if agg == "max" else "sum"
            vals = [db.execute(f"SELECT {fn}({col}) FROM layers WHERE run_id = ?",
                               (i,)).fetchone()[0] for i in ids]
        else:
            continue
        for i, v in zip(ids, vals):
            if not close(float(r[f"run {i}"]), v, 1e-12):
                fail(f"compare: {r['quantity']} of run {i} is {r[f'run {i}']}, store {v}")
        v0 = vals[0]
        for i, v in zip(ids[1:], vals[1:]):
            if not close(float(r[f"run {i} abs diff"]), v - v0, 1e-9):
                fail(f"compare: abs diff of {r['quantity']} run {i}: {r[f'run {i} abs diff']}, "
                     f"expected {v - v0}")
            rel = r[f"run {i} rel diff (%)"]
            if v0 == 0:
                if rel is not None:
                    fail(f"compare: relative difference against 0 given: {rel}")
            elif abs(rel - 100 * (v - v0) / abs(v0)) > 1e-3 * max(1, abs(rel)):
                fail(f"compare: rel diff of {r['quantity']} run {i}: {rel}, expected "
                     f"{100 * (v - v0) / abs(v0)}")
    if seen_metric == 0:
        fail("compare: no metric rows")
    del first


def main():
    cmd = sys.argv[1]
    if cmd == "figures":
        only = [int(x) for x in sys.argv[5].split(",")] if len(sys.argv) > 5 else []
        figures(sys.argv[2], sys.argv[3], sys.argv[4], only)
    elif cmd == "timeline":
        timeline(*sys.argv[2:5])
    elif cmd == "compare":
        compare(*sys.argv[2:])
    else:
        sys.exit("usage: verify.py figures|timeline|compare ...")
    if failures:
        sys.exit(1)
    print(f"ok: {cmd} checks")


if __name__ == "__main__":
    main()
