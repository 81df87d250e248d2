/* sim/compute.c: the roofline compute model.  See compute.h. */
#include "config.h"
#include "sim/compute.h"

#include <math.h>

/* As sim_compute_init, from a node group's figures of the same names. */
static void init_gpu(struct sim_compute *k, const struct moe_node_group *g, const struct moe_model *m)
{
	k->peak_flops = m->weight_bytes <= 1 && g->flops_fp8 > 0 ? g->flops_fp8 : g->flops_bf16;
	k->hbm_Bps = g->hbm_Bps;
	k->launch_s = g->launch_s;
	k->eff_max = g->compute_efficiency;
	k->m_half = g->m_half > 0 ? g->m_half : 128;
}

void sim_compute_init(struct sim_compute *k, const struct moe_cluster *c, const struct moe_model *m)
{
	k->peak_flops = m->weight_bytes <= 1 && c->flops_fp8 > 0 ? c->flops_fp8 : c->flops_bf16;
	k->hbm_Bps = c->hbm_Bps;
	k->launch_s = c->launch_s;
	k->eff_max = c->compute_efficiency;
	k->m_half = c->m_half > 0 ? c->m_half : 128;
}

void sim_compute_init_kind(struct sim_compute *k, const struct moe_cluster *c, int kind,
			   const struct moe_model *m)
{
	struct moe_node_group g;

	moe_cluster_kind(c, kind, &g);
	init_gpu(k, &g, m);
}

double sim_compute_eff(const struct sim_compute *k, double rows)
{
	return rows > 0 ? k->eff_max * rows / (rows + k->m_half) : 0;
}

static double roof(const struct sim_compute *k, double flops, double bytes, double rows)
{
	double tc = flops > 0 ? flops / (k->peak_flops * sim_compute_eff(k, rows)) : 0;
	double tm = bytes / k->hbm_Bps;

	return tc > tm ? tc : tm;
}

static int mats(const struct moe_model *m)
{
	return m->activation == MOE_ACT_SWIGLU ? 3 : 2;
}

double sim_compute_ffn_s(const struct sim_compute *k, const struct moe_model *m, int ffn, double n)
{
	double d = m->hidden, f = ffn, mt = mats(m);

	if (n <= 0 || ffn <= 0)
		return 0;
	return roof(k, 2 * mt * n * d * f,
		    mt * d * f * m->weight_bytes + n * (2 * d + mt * f) * m->act_bytes, n);
}

double sim_compute_experts_s(const struct sim_compute *k, const struct moe_model *m,
			     const double *loads, int nexperts, double slowdown)
{
	double t = 0;
	int any = 0;

	for (int i = 0; i < nexperts; i++) {
		t += sim_compute_ffn_s(k, m, m->expert_ffn, loads[i]);
		any |= loads[i] > 0;
	}
	return any ? t * slowdown + mats(m) * k->launch_s : 0;
}

double sim_compute_other_s(const struct sim_compute *k, const struct moe_model *m, double tokens,
			   double context, double slowdown)
{
	double d = m->hidden, h = m->heads, kv = m->kv_heads, hd = m->head_dim;
	double t = 0, flops, bytes, ctx;

	if (tokens <= 0)
		return 0;
	if (h > 0) {
		/* projections: Q and O are d x h.hd, K and V d x kv.hd */
		flops = 2 * tokens * d * (2 * h * hd + 2 * kv * hd);
		bytes = d * (2 * h * hd + 2 * kv * hd) * m->weight_bytes +
			tokens * (2 * d + 2 * h * hd + 2 * kv * hd) * m->act_bytes;
		t += roof(k, flops, bytes, tokens);
		/* scores and values: causal over the tokens, or over the cache */
		ctx = context > 0 ? context : tokens / 2;
		flops = 2 * 2 * tokens * ctx * h * hd;
		bytes = (context > 0 ? tokens * context : tokens) * 2 * kv * hd * m->act_bytes;
		t += roof(k, flops, bytes, tokens);
	}
	/* router */
	t += roof(k, 2 * tokens * d * m->experts, d * m->experts * 4 + tokens * d * m->act_bytes, tokens);
	for (int s = 0; s < m->shared_experts; s++)
		t += sim_compute_ffn_s(k, m, m->shared_ffn, tokens);
	return t * slowdown + (4 + (m->shared_experts > 0 ? mats(m) : 0)) * k->launch_s;
}
