#!/usr/bin/env python3
"""traces/capture_hf.py: record the router logits of a Hugging Face MoE model.

Runs a transformers Mixture-of-Experts model (Mixtral, Qwen2-MoE / Qwen3-MoE,
OLMoE, or any model whose forward accepts output_router_logits=True) over a
text file and writes an .npz that `moekit trace import` reads: one float32
array per MoE layer, named layer_<L>, of shape [tokens, experts] (the
router's logits for every token of every sequence, in order).

    python3 traces/capture_hf.py --model mistralai/Mixtral-8x7B-v0.1 \\
        --text corpus.txt --seq-len 2048 --max-tokens 16384 -o mixtral.npz
    moekit trace import mixtral.npz --model mixtral-8x7b --ranks 8 -o mixtral.moetrace

--model takes a model id or a local folder (weights are loaded the usual
transformers way; with HF_HUB_OFFLINE=1 only local files are used).
--tiny-mixtral builds a small randomly initialized Mixtral instead (no
download, no tokenizer: bytes of the text are the token ids), which is what
moekit's tests use.  --selected FILE.npz also writes, to a second file,
ids_layer_<L> [tokens, k] with the experts the model itself selected (top-k
of its softmax), so the import can be checked against it.

Needs torch and transformers (Debian: python3-torch; pip: transformers).
"""
import argparse
import os
import sys
import tempfile

import numpy as np


def fail(msg):
    sys.stderr.write("capture_hf.py: %s\n" % msg)
    sys.exit(1)


def load_model(args):
    try:
        import torch
        import transformers
    except ImportError as e:
        fail("needs torch and transformers (%s)" % e)
    torch.manual_seed(args.seed)
    if args.tiny_mixtral:
        cfg = transformers.MixtralConfig(
            vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, num_local_experts=8,
            num_experts_per_tok=2, max_position_embeddings=4096)
        model = transformers.MixtralForCausalLM(cfg)
        return model, None, cfg
    if not args.model:
        fail("--model or --tiny-mixtral is required")
    tok = transformers.AutoTokenizer.from_pretrained(args.model)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, torch_dtype="auto")
    return model, tok, model.config


def token_ids(args, tok, cfg):
    try:
        with open(args.text, "rb") as f:
            raw = f.read()
    except OSError as e:
        fail("%s: %s" % (args.text, e.strerror))
    if tok is None:
        ids = [b % cfg.vocab_size for b in raw]
    else:
        ids = tok(raw.decode("utf-8", errors="replace"))["input_ids"]
    ids = ids[: args.max_tokens]
    if not ids:
        fail("%s: no tokens" % args.text)
    return ids


def save(path, arrays):
    """Writes beside path and renames, so no partial .npz is ever left."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".capture-", suffix=".npz", dir=d)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model id or local folder")
    p.add_argument("--tiny-mixtral", action="store_true",
                   help="a small random Mixtral built here (tests; no download)")
    p.add_argument("--text", required=True, help="text file to run the model on")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per sequence (default 512)")
    p.add_argument("--max-tokens", type=int, default=8192, help="tokens in all (default 8192)")
    p.add_argument("--seed", type=int, default=0, help="seed of --tiny-mixtral's weights")
    p.add_argument("--selected", metavar="FILE",
                   help="also write ids_layer_<L>, the experts the model selected, to FILE")
    p.add_argument("-o", "--output", required=True, help="the .npz to write")
    args = p.parse_args()
    if args.seq_len < 1 or args.max_tokens < 1:
        fail("--seq-len and --max-tokens must be positive")

    import torch
    model, tok, cfg = load_model(args)
    model.eval()
    ids = token_ids(args, tok, cfg)
    k = getattr(cfg, "num_experts_per_tok", 2)
    per_layer = None
    with torch.no_grad():
        for start in range(0, len(ids), args.seq_len):
            seq = torch.tensor([ids[start:start + args.seq_len]])
            out = model(seq, output_router_logits=True)
            logits = out.router_logits
            if logits is None:
                fail("the model returned no router logits: not a supported MoE model")
            if per_layer is None:
                per_layer = [[] for _ in logits]
            for layer, l in enumerate(logits):
                per_layer[layer].append(l.reshape(-1, l.shape[-1]).float().numpy())
    arrays, selected = {}, {}
    for layer, chunks in enumerate(per_layer):
        x = np.ascontiguousarray(np.concatenate(chunks).astype(np.float32))
        if not np.isfinite(x).all():
            fail("layer %d: router logits are not finite" % layer)
        arrays["layer_%d" % layer] = x
        if args.selected:
            prob = torch.softmax(torch.from_numpy(x), dim=-1)
            selected["ids_layer_%d" % layer] = torch.topk(prob, k, dim=-1).indices.numpy().astype(np.int32)
    save(args.output, arrays)
    if args.selected:
        save(args.selected, selected)
    sys.stderr.write("capture_hf.py: %d tokens, %d layers, %d experts -> %s\n"
                     % (len(ids), len(per_layer), per_layer[0][0].shape[-1], args.output))


if __name__ == "__main__":
    main()
