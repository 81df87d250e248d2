#!/usr/bin/env python3
"""tests/profiler_ref.py: `moekit profile` against an independent NumPy
implementation of the MoE layer, on the same weights and input.

The weights are written here as Hugging Face checkpoints (config.json plus
safetensors written by hand from the format's definition: 8-byte
little-endian header length, JSON header, raw little-endian data; no torch,
no safetensors package), in F32, F16 and BF16, one file or sharded with
model.safetensors.index.json.  moekit reads them with --weights and the
input with --input, writes its output with --output, and the reference
computes the layer in float64 from the same (dtype-rounded) values.

Modes:
  profiler_ref.py MOEKIT WORKDIR ref      forward cases (exit 1 on mismatch)
  profiler_ref.py MOEKIT WORKDIR errors   every checkpoint error, end to end
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np

TOL = 1e-4


# ---------------------------------------------------------------- writing

def bf16_bits(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def encode(dtype, a):
    """Bytes of a in dtype, and the values as moekit will read them."""
    a = np.asarray(a, dtype=np.float64)
    if dtype == "F32":
        v = a.astype("<f4")
        return v.tobytes(), v.astype(np.float64)
    if dtype == "F16":
        v = a.astype("<f2")
        return v.tobytes(), v.astype(np.float64)
    if dtype == "BF16":
        b = bf16_bits(a).astype("<u2")
        back = (b.astype(np.uint32) << 16).view(np.float32)
        return b.tobytes(), back.astype(np.float64)
    raise ValueError(dtype)


def write_safetensors(path, tensors, pad_header=True):
    """tensors: list of (name, dtype, array or raw (bytes, shape))."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, dtype, arr in tensors:
        if isinstance(arr, tuple):
            data, shape = arr
        else:
            data, _ = encode(dtype, arr)
            shape = list(np.shape(arr))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header).encode()
    if pad_header:
        h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_npy(path, a):
    np.save(path, np.ascontiguousarray(a, dtype=np.float32))


# ---------------------------------------------------------------- reference

def silu(x):
    return x / (1.0 + np.exp(-x))


def ffn(x, g, u, d):
    return (silu(x @ g.T) * (x @ u.T)) @ d.T


def route(logits, cfg, bias):
    """ids [n,k], weights [n,k], and each token's selection margin."""
    n, e = logits.shape
    k = cfg["k"]
    if cfg["kind"] == "softmax":
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        score, key = p, logits.copy()
    else:  # sigmoid with a selection bias, DeepSeek-V3
        score = 1.0 / (1.0 + np.exp(-logits))
        key = score + bias[None, :]
    ids = np.zeros((n, k), dtype=np.int64)
    w = np.zeros((n, k))
    margin = np.full(n, np.inf)
    for t in range(n):
        kt = key[t].copy()
        g = cfg.get("groups", 1)
        if g > 1:
            per = e // g
            gs = np.array([np.sort(kt[i * per:(i + 1) * per])[::-1][:2].sum() for i in range(g)])
            order = sorted(range(g), key=lambda i: (-gs[i], i))
            keep = order[:cfg["groups_per_token"]]
            if len(order) > len(keep):
                margin[t] = min(margin[t], gs[keep[-1]] - gs[order[len(keep)]])
            mask = np.full(e, -np.inf)
            for i in keep:
                mask[i * per:(i + 1) * per] = 0
            kt = kt + mask
        order = sorted(range(e), key=lambda i: (-kt[i], i))
        sel = order[:k]
        if k < e and np.isfinite(kt[order[k]]):
            margin[t] = min(margin[t], kt[sel[-1]] - kt[order[k]])
        s = score[t, sel]
        if cfg["norm"]:
            s = s / s.sum()
        ids[t] = sel
        w[t] = s * cfg.get("scaling", 1.0)
    return ids, w, margin


def layer_ref(x, W, cfg):
    logits = x @ W["router"].T
    ids, w, margin = route(logits, cfg, W.get("bias"))
    y = np.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(cfg["k"]):
            e = ids[t, j]
            y[t] += w[t, j] * ffn(x[t:t + 1], W["gate"][e], W["up"][e], W["down"][e])[0]
    if "s_gate" in W:
        s = ffn(x, W["s_gate"], W["s_up"], W["s_down"])
        if "s_router" in W:  # Qwen2-MoE: shared output times sigmoid(x . g)
            s *= 1.0 / (1.0 + np.exp(-(x @ W["s_router"].T)))
        y += s
    return y, margin


# ---------------------------------------------------------------- cases

def make_layer(rng, H, F, E, Fs=0, bias=False):
    b = 1 / np.sqrt(H)
    W = {"router": rng.uniform(-b, b, (E, H)) * 4,
         "gate": [rng.uniform(-b, b, (F, H)) for _ in range(E)],
         "up": [rng.uniform(-b, b, (F, H)) for _ in range(E)],
         "down": [rng.uniform(-1 / np.sqrt(F), 1 / np.sqrt(F), (H, F)) for _ in range(E)]}
    if bias:
        W["bias"] = rng.uniform(-0.1, 0.1, E)
    if Fs:
        W["s_gate"] = rng.uniform(-b, b, (Fs, H))
        W["s_up"] = rng.uniform(-b, b, (Fs, H))
        W["s_down"] = rng.uniform(-1 / np.sqrt(Fs), 1 / np.sqrt(Fs), (H, Fs))
    return W


def tensors_for(W, arch, layer, dtypes=("F32", "F32", "F32")):
    """(name, dtype, array) in the arch's names; W's values replaced by the
    dtype-rounded ones moekit reads."""
    pre = "model.layers.%d." % layer
    out = []

    def add(name, dt, key, idx=None):
        a = W[key] if idx is None else W[key][idx]
        _, back = encode(dt, a)
        if idx is None:
            W[key] = back
        else:
            W[key][idx] = back
        out.append((pre + name, dt, a))

    if arch == "mixtral":
        add("block_sparse_moe.gate.weight", "F32", "router")
        for e in range(len(W["gate"])):
            add("block_sparse_moe.experts.%d.w1.weight" % e, dtypes[0], "gate", e)
            add("block_sparse_moe.experts.%d.w3.weight" % e, dtypes[1], "up", e)
            add("block_sparse_moe.experts.%d.w2.weight" % e, dtypes[2], "down", e)
    else:
        add("mlp.gate.weight", "F32", "router")
        if "bias" in W:
            add("mlp.gate.e_score_correction_bias", "F32", "bias")
        for e in range(len(W["gate"])):
            add("mlp.experts.%d.gate_proj.weight" % e, dtypes[0], "gate", e)
            add("mlp.experts.%d.up_proj.weight" % e, dtypes[1], "up", e)
            add("mlp.experts.%d.down_proj.weight" % e, dtypes[2], "down", e)
        if "s_gate" in W:
            sh = "mlp.shared_expert" if arch == "qwen2_moe" else "mlp.shared_experts"
            add(sh + ".gate_proj.weight", dtypes[0], "s_gate")
            add(sh + ".up_proj.weight", dtypes[1], "s_up")
            add(sh + ".down_proj.weight", dtypes[2], "s_down")
        if "s_router" in W:
            add("mlp.shared_expert_gate.weight", "F32", "s_router")
    return out


def run(moekit, args):
    p = subprocess.run([moekit, "profile"] + args, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def compare(name, y, ref, margin, k_ok=1e-5):
    ok_tok = margin > k_ok
    skipped = int((~ok_tok).sum())
    diff = np.abs(y[ok_tok] - ref[ok_tok])
    scale = np.abs(ref[ok_tok]).max()
    rel = diff.max() / scale
    rel2 = np.linalg.norm(y[ok_tok] - ref[ok_tok]) / np.linalg.norm(ref[ok_tok])
    good = rel <= TOL and rel2 <= TOL and ok_tok.sum() >= 0.9 * len(ok_tok)
    print("%-34s max err / max |ref| %.2e, norm-wise %.2e, near-tie tokens skipped %d: %s"
          % (name, rel, rel2, skipped, "ok" if good else "FAIL"))
    return good


def check_capture(moekit, name, trace, x, W, cfg, margin):
    """The captured trace holds the forward's routing: ids equal to the
    reference's (near ties aside), weights and logits to 1e-4."""
    js = trace + ".jsonl"
    p = subprocess.run([moekit, "trace", "export", trace, "-o", js], capture_output=True, text=True)
    if p.returncode != 0:
        print("%s: trace export failed: %s" % (name, p.stderr.strip()))
        return False
    logits = x.astype(np.float64) @ W["router"].T
    ids, w, _ = route(logits, cfg, W.get("bias"))
    bad = 0
    with open(js) as f:
        for line in f:
            r = json.loads(line)
            t = r["token"]
            if r["step"] != 0 or margin[t] <= 1e-5:
                continue
            if list(r["experts"]) != list(ids[t]) or \
                    np.abs(np.array(r["weights"]) - w[t]).max() > 1e-4 * max(1.0, np.abs(w[t]).max()) or \
                    np.abs(np.array(r["logits"]) - logits[t]).max() > 1e-4 * np.abs(logits[t]).max():
                bad += 1
    print("%-34s captured routing: %d tokens differ: %s" % (name + " top-%d" % cfg["k"], bad,
                                                            "ok" if bad == 0 else "FAIL"))
    return bad == 0


def case(moekit, work, name, arch, config, W, cfg, n, layer, dtypes, shard=False, extra=()):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f)
    ts = tensors_for(W, arch, layer, dtypes)
    # an unrelated tensor, as real checkpoints have
    ts.append(("model.embed_tokens.weight", "BF16", np.ones((4, config["hidden_size"]))))
    if shard:
        half = len(ts) // 2
        files = {"model-00001-of-00002.safetensors": ts[:half],
                 "model-00002-of-00002.safetensors": ts[half:]}
        wm = {}
        for fn, part in files.items():
            write_safetensors(os.path.join(d, fn), part)
            for t in part:
                wm[t[0]] = fn
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, f)
    else:
        write_safetensors(os.path.join(d, "model.safetensors"), ts)
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (n, config["hidden_size"])).astype(np.float32)
    write_npy(os.path.join(d, "x.npy"), x)
    ok = True
    results = {}
    for k in cfg["ks"]:
        out = os.path.join(d, "y%d.npy" % k)
        trace = os.path.join(d, "t%d.moetrace" % k)
        rc, so, se = run(moekit, ["--weights", d, "--layer", str(layer), "--input",
                                  os.path.join(d, "x.npy"), "--output", out, "--reps", "1",
                                  "--warmup", "0", "--no-probe", "--threads", "2", "--top-k",
                                  str(k), "--quiet", "--capture", trace] + list(extra))
        if rc != 0:
            print("%s: moekit profile failed (%d): %s" % (name, rc, se.strip()))
            return False
        y = np.load(out).astype(np.float64)
        c = dict(cfg, k=k)
        ref, margin = layer_ref(x.astype(np.float64), W, c)
        ok &= compare("%s top-%d" % (name, k), y, ref, margin)
        ok &= check_capture(moekit, name, trace, x, W, c, margin)
        results[k] = (y, ref)
    return ok


def ref_mode(moekit, work):
    rng = np.random.default_rng(1234)
    ok = True
    # Mixtral: softmax top-2, renormalized; experts in BF16, F16, F32; and
    # top-1 from the same logits (--top-k 1).
    H, F, E = 64, 48, 8
    W = make_layer(rng, H, F, E)
    conf = {"model_type": "mixtral", "hidden_size": H, "intermediate_size": F,
            "num_local_experts": E, "num_experts_per_tok": 2, "num_hidden_layers": 2}
    ok &= case(moekit, work, "mixtral", "mixtral", conf, W,
               {"kind": "softmax", "norm": True, "ks": (2, 1)}, 40, 1, ("BF16", "F16", "F32"))
    # OLMoE names, no renormalization (norm_topk_prob false).
    H, F, E = 48, 40, 8
    W = make_layer(rng, H, F, E)
    conf = {"model_type": "olmoe", "hidden_size": H, "intermediate_size": F, "num_experts": E,
            "num_experts_per_tok": 2, "norm_topk_prob": False, "num_hidden_layers": 1}
    ok &= case(moekit, work, "olmoe", "olmoe", conf, W,
               {"kind": "softmax", "norm": False, "ks": (2,)}, 33, 0, ("F32", "F32", "F32"))
    # Qwen2-MoE: softmax top-4 without renormalization, a shared expert of
    # another size whose output is gated by sigmoid(x . shared_expert_gate).
    H, F, E = 48, 24, 8
    W = make_layer(rng, H, F, E, Fs=40)
    W["s_router"] = rng.uniform(-0.5, 0.5, (1, H))
    conf = {"model_type": "qwen2_moe", "hidden_size": H, "intermediate_size": 999,
            "moe_intermediate_size": F, "num_experts": E, "num_experts_per_tok": 4,
            "norm_topk_prob": False, "shared_expert_intermediate_size": 40,
            "num_hidden_layers": 2, "decoder_sparse_step": 1}
    ok &= case(moekit, work, "qwen2_moe", "qwen2_moe", conf, W,
               {"kind": "softmax", "norm": False, "ks": (4,)}, 30, 1, ("F16", "F32", "BF16"))
    # DeepSeek-V3 style, scaled down: sigmoid scores, selection bias, 4 groups
    # of 8 keeping 2, top-8, routed scaling 2.5, one shared expert; layer 1
    # after one dense layer; sharded checkpoint.
    H, F, E = 64, 32, 32
    W = make_layer(rng, H, F, E, Fs=F, bias=True)
    conf = {"model_type": "deepseek_v3", "hidden_size": H, "intermediate_size": 999,
            "moe_intermediate_size": F, "n_routed_experts": E, "num_experts_per_tok": 8,
            "n_group": 4, "topk_group": 2, "norm_topk_prob": True, "routed_scaling_factor": 2.5,
            "scoring_func": "sigmoid", "n_shared_experts": 1, "first_k_dense_replace": 1,
            "num_hidden_layers": 3}
    ok &= case(moekit, work, "deepseek_v3", "deepseek", conf, W,
               {"kind": "sigmoid", "norm": True, "scaling": 2.5, "groups": 4, "groups_per_token": 2,
                "ks": (8,)}, 48, 1, ("F32", "BF16", "F32"), shard=True)
    return 0 if ok else 1


# ---------------------------------------------------------------- errors

def errors_mode(moekit, work):
    rng = np.random.default_rng(7)
    H, F, E = 16, 8, 4
    conf = {"model_type": "mixtral", "hidden_size": H, "intermediate_size": F,
            "num_local_experts": E, "num_experts_per_tok": 2, "num_hidden_layers": 1}
    failures = 0

    def folder(name, tensors=None, config=conf, raw=None):
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        if config is not None:
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(config, f)
        if raw is not None:
            with open(os.path.join(d, "model.safetensors"), "wb") as f:
                f.write(raw)
        elif tensors is not None:
            write_safetensors(os.path.join(d, "model.safetensors"), tensors)
        return d

    def expect(name, d, code, needle, extra=()):
        nonlocal failures
        rc, so, se = run(moekit, ["--weights", d, "--no-probe", "--reps", "1", "--warmup", "0",
                                  "--tokens", "4", "--quiet"] + list(extra))
        lines = se.strip().splitlines()
        good = rc == code and len(lines) >= 1 and needle in lines[0] and \
            lines[0].startswith("moekit profile: ")
        print("%-28s exit %d, %s: %s" % (name, rc, lines[0] if lines else "(no message)",
                                         "ok" if good else "FAIL (wanted exit %d and '%s')" % (code, needle)))
        failures += not good

    W = make_layer(rng, H, F, E)
    good = tensors_for(W, "mixtral", 0)
    folder("valid", good)
    # a valid checkpoint must run: exit 0 and nothing on stderr
    rc, so, se = run(moekit, ["--weights", os.path.join(work, "valid"), "--no-probe", "--reps", "1",
                              "--tokens", "4", "--quiet"])
    print("%-28s exit %d: %s" % ("valid checkpoint", rc, "ok" if rc == 0 and not se.strip() else "FAIL " + se))
    failures += not (rc == 0 and not se.strip())

    # offsets past the end of the file
    hdr = json.dumps({"model.layers.0.block_sparse_moe.gate.weight":
                      {"dtype": "F32", "shape": [E, H], "data_offsets": [0, 4 * E * H]}}).encode()
    expect("offsets past the end", folder("past_end", raw=struct.pack("<Q", len(hdr)) + hdr + b"\0" * 16),
           1, "outside the 16 data bytes")
    # overlapping tensors
    hdr = json.dumps({"a": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]},
                      "b": {"dtype": "F32", "shape": [16], "data_offsets": [32, 96]}}).encode()
    expect("overlapping tensors", folder("overlap", raw=struct.pack("<Q", len(hdr)) + hdr + b"\0" * 96),
           1, "overlap")
    # header length beyond the file
    expect("header length lies", folder("hlen", raw=struct.pack("<Q", 1 << 40) + b"{}"), 1,
           "exceeds the file")
    # truncated (shorter than the length field)
    expect("truncated file", folder("trunc", raw=b"\x10\0\0"), 1, "shorter than the 8-byte header")
    # a dtype it cannot read (in the header) and one it cannot convert
    hdr = json.dumps({"x": {"dtype": "F4", "shape": [1], "data_offsets": [0, 1]}}).encode()
    expect("unknown dtype", folder("dtype", raw=struct.pack("<Q", len(hdr)) + hdr + b"\0"), 1,
           "unknown dtype 'F4'")
    i8 = [(n, "F32", a) for n, _, a in good]
    i8[1] = (i8[1][0], "I8", (b"\0" * (F * H), [F, H]))
    expect("unconvertible dtype", folder("i8", i8), 1, "dtype I8; moekit loads F32, F16 and BF16")
    # a shape that disagrees with the model
    bad = list(good)
    bad[2] = (bad[2][0], "F32", np.zeros((F + 1, H)))
    expect("shape disagrees", folder("shape", bad), 1, "the model expects [%d, %d]" % (F, H))
    # a missing tensor: says which and the nearest present
    expect("missing tensor", folder("missing", good[:-1]), 1,
           "no tensor 'model.layers.0.block_sparse_moe.experts.%d.w2.weight'" % (E - 1))
    rc, so, se = run(moekit, ["--weights", os.path.join(work, "missing"), "--no-probe", "--tokens", "4"])
    if "nearest: model.layers.0.block_sparse_moe.experts.%d.w1.weight" % (E - 1) not in se:
        print("missing tensor: nearest names not listed: %s" % se.strip())
        failures += 1
    # another architecture's checkpoint: config says llama
    expect("another architecture", folder("llama", good, dict(conf, model_type="llama")), 1,
           "\"llama\" is not an MoE architecture")
    # Mixtral config over a Qwen-named checkpoint: names missing, nearest shown
    q = tensors_for(make_layer(rng, H, F, E), "olmoe", 0)
    expect("names of another model", folder("qwen_as_mixtral", q), 1,
           "no tensor 'model.layers.0.block_sparse_moe.gate.weight'")
    # no config.json and no --model
    expect("no config, no model", folder("noconf", good, None), 2, "has no config.json")
    # no config.json with --model: names detected; runs
    rc, so, se = run(moekit, ["--weights", os.path.join(work, "noconf"), "--model", "mixtral-8x7b",
                              "--hidden", str(H), "--ffn", str(F), "--experts", str(E),
                              "--no-probe", "--reps", "1", "--tokens", "4", "--quiet"])
    if rc != 0:
        print("no config with --model: failed %d %s" % (rc, se.strip()))
        failures += 1
    # a dense layer chosen
    expect("dense layer", folder("dense", good, dict(conf, model_type="deepseek_v3", n_routed_experts=E,
                                                     first_k_dense_replace=1, num_hidden_layers=2)),
           2, "a dense layer", ("--layer", "0"))
    # a broken index
    d = folder("badindex", None)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        f.write('{"weight_map": {"x": "../etc/passwd"}}')
    expect("index escapes the folder", d, 1, "expected a file name in the folder")
    # a bad --input
    np.save(os.path.join(work, "x_bad.npy"), np.zeros((3, H + 1), dtype=np.float32))
    expect("input of the wrong width", os.path.join(work, "valid"), 2, "columns",
           ("--input", os.path.join(work, "x_bad.npy"), "--tokens", "3"))
    print("%d failures" % failures)
    return 1 if failures else 0


def main():
    moekit, work, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    return ref_mode(moekit, work) if mode == "ref" else errors_mode(moekit, work)


if __name__ == "__main__":
    sys.exit(main())
