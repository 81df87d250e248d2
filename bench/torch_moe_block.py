#!/usr/bin/env python3
"""bench/torch_moe_block.py: PyTorch eager reference for bench_forward: the
Hugging Face MixtralSparseMoeBlock forward (router Linear, softmax, top-k,
renormalize, a loop over experts with torch.where / index_add_, each expert
w2(silu(w1 x) * w3 x) as nn.Linear), FP32 on the CPU, no_grad.

Prints the median seconds of --reps forwards (after 2 warm-ups) on the first
line of stdout, then a comment line with the torch version and threads.
Run it fairly: OMP_WAIT_POLICY=passive and OMP/MKL/OPENBLAS_NUM_THREADS set
to --threads (bench_forward does); torch.set_num_threads(--threads) is
called here.
"""
import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


class Expert(nn.Module):
    def __init__(self, hidden, ffn):
        super().__init__()
        self.w1 = nn.Linear(hidden, ffn, bias=False)
        self.w2 = nn.Linear(ffn, hidden, bias=False)
        self.w3 = nn.Linear(hidden, ffn, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SparseMoeBlock(nn.Module):
    """transformers' MixtralSparseMoeBlock, as of 4.40, without jitter."""

    def __init__(self, hidden, ffn, experts, top_k):
        super().__init__()
        self.num_experts, self.top_k = experts, top_k
        self.gate = nn.Linear(hidden, experts, bias=False)
        self.experts = nn.ModuleList([Expert(hidden, ffn) for _ in range(experts)])

    def forward(self, hidden_states):
        n, hidden_dim = hidden_states.shape
        router_logits = self.gate(hidden_states)
        routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
        routing_weights, selected_experts = torch.topk(routing_weights, self.top_k, dim=-1)
        routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
        final = torch.zeros((n, hidden_dim), dtype=hidden_states.dtype)
        expert_mask = F.one_hot(selected_experts, num_classes=self.num_experts).permute(2, 1, 0)
        for e in range(self.num_experts):
            idx, top_x = torch.where(expert_mask[e])
            if top_x.numel() == 0:
                continue
            cur = hidden_states[None, top_x].reshape(-1, hidden_dim)
            out = self.experts[e](cur) * routing_weights[top_x, idx, None]
            final.index_add_(0, top_x, out.to(hidden_states.dtype))
        return final, router_logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--ffn", type=int, default=2816)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    block = SparseMoeBlock(a.hidden, a.ffn, a.experts, a.top_k).eval()
    x = torch.rand(a.tokens, a.hidden) * 2 - 1
    times = []
    with torch.no_grad():
        for i in range(2 + a.reps):
            t0 = time.perf_counter()
            block(x)
            t = time.perf_counter() - t0
            if i >= 2:
                times.append(t)
    print("%.6f" % statistics.median(times))
    print("# torch %s, %d threads" % (torch.__version__, torch.get_num_threads()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
