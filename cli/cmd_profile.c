/* cli/cmd_profile.c: `moekit profile`: run one MoE layer's forward pass on
 * this machine's CPU (random or Hugging Face weights), time every stage,
 * optionally capture the router trace, and store the run. */
#include "config.h"
#include "cli/cli.h"
#include "moe/model.h"
#include "moe/route.h"
#include "profiler/forward.h"
#include "profiler/harness.h"
#include "profiler/npy.h"
#include "profiler/safetensors.h"
#include "profiler/weights.h"
#include "store/store.h"
#include "traces/trace.h"
#ifdef HAVE_MPI
#include <mpi.h>
#include "profiler/ep.h"
#endif
#include "moe/units.h"
#ifdef HAVE_CUDA
#include "profiler/cuda/cuda_backend.h"
#endif

#include <getopt.h>
#include <gsl/gsl_rng.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage_text[] =
	"Usage: moekit profile (--model PRESET|FILE | --weights DIR) [options]\n"
	"       mpirun -np R moekit profile --ep R (--model ... | --weights ...) [options]\n"
	"       mpirun -np R moekit profile a2a [options]\n"
	"       moekit profile --device cuda[:N] (--model ... | --weights ...) [options]\n"
	"       moekit profile a2a --device cuda [--gpus G] [options]\n\n"
	"Run one MoE layer's forward pass in FP32 on this machine's CPU and time\n"
	"each stage: router GEMM, routing (the same policies as `moekit trace`),\n"
	"permutation into per-expert groups, the fused gate/up GEMM, the SiLU(gate)\n"
	"* up activation (fused into that GEMM's epilogue), the down GEMM and the\n"
	"weighted combine.  Each stage's median, 10th and 90th percentiles and\n"
	"minimum over --reps runs after --warmup untimed ones; GFLOP/s counted on\n"
	"the rows actually routed, and as a share of this machine's SGEMM roof\n"
	"(OpenBLAS on 2048^3 with the same threads, measured once at start).\n\n"
	"Layer:\n"
	"  --model NAME|FILE   model preset or INI file: shape and routing\n"
	"  --hidden N          scale down: hidden size\n"
	"  --ffn N             scale down: one expert's FFN size\n"
	"  --experts N         scale down: routed experts (groups must still divide it)\n"
	"  --top-k N           experts per token (default: the model's)\n"
	"  --weights DIR       Hugging Face folder (config.json + model.safetensors or\n"
	"                      model.safetensors.index.json) or one .safetensors file;\n"
	"                      names of Mixtral, Qwen2/Qwen3-MoE, OLMoE, DeepSeek-V3.\n"
	"                      Without config.json, --model gives the shape.\n"
	"  --layer N           layer of the checkpoint (default: its first MoE layer)\n\n"
	"Run:\n"
	"  --tokens N          tokens per forward (default 512, or the --input rows)\n"
	"  --threads N         threads (default: online processors)\n"
	"  --reps N            timed forwards (default 10)\n"
	"  --warmup N          untimed forwards first (default 2)\n"
	"  --seed N            seed of random weights and input (default 1)\n"
	"  --input FILE.npy    hidden states [tokens x hidden], float32 or float64\n"
	"  --output FILE.npy   write the layer's output [tokens x hidden], float32\n"
	"  --capture FILE      write every forward's routing (ids, weights, logits) as a\n"
	"                      .moetrace (one layer, one step per forward)\n"
	"  --no-probe          skip the SGEMM roof probe (no %-of-roof figures)\n"
	"  --device DEV        cpu (default), or cuda[:N]: the CUDA back end on GPU N\n"
	"                      (default 0): BF16 weights and activations with FP32\n"
	"                      accumulation, cuBLAS GEMMs (experts grouped), the same\n"
	"                      routing as the CPU, stage times from CUDA events.  A\n"
	"                      build without CUDA, or a machine without a GPU, says\n"
	"                      so and exits 1.\n"
	"  --dtype T           with --device cuda: bf16 (default) or fp16\n\n"
	"Output:\n"
	"  --db FILE           store the run (kind profile) with its stages, expert\n"
	"                      loads and metrics\n"
	"  --label TEXT        label of the stored run\n"
	"  --format FMT        table (default), csv or json\n"
	"  -q, --quiet         no progress on stderr\n"
	"  -h, --help          show this help\n\n"
	"Expert parallelism (built with MPI):\n"
	"  --ep R              run under `mpirun -np R`: rank r owns experts\n"
	"                      [rE/R, (r+1)E/R) and its share of the tokens; dispatch\n"
	"                      and combine by MPI_Alltoallv, timed as their own stages\n"
	"                      (max over ranks); output equals one process's.\n"
	"  `moekit profile a2a --help`: the MPI all-to-all microbenchmark\n"
	"  (with --device cuda: NCCL between the GPUs of this node, no mpirun).\n"
	"A build without MPI says so and exits 1.\n\n"
	"Examples:\n"
	"  moekit profile --model mixtral-8x7b --hidden 1024 --ffn 2816 --tokens 512\n"
	"  moekit profile --weights ~/hf/OLMoE-1B-7B-0924 --layer 3 --capture olmoe.moetrace\n"
	"  moekit profile --model deepseek-v3 --hidden 512 --ffn 256 --experts 64 --db study.db\n"
	"  mpirun -np 2 moekit profile --ep 2 --model mixtral-8x7b --hidden 1024 --ffn 2816 --threads 1\n"
	"  mpirun -np 2 moekit profile a2a --max-bytes 256MiB\n\n"
	"Exit status: 0 success, 1 a runtime failure (unreadable or lying checkpoint,\n"
	"missing tensor, unsupported architecture), 2 a usage error.\n";

#define CMD "profile"

struct opts {
	const char *model, *weights, *input, *output, *capture, *db, *label;
	long hidden, ffn, experts, top_k, layer, tokens, threads, reps, warmup, seed;
	int probe, quiet;
	enum cli_format fmt;
	int cuda, fp16;         /* --device cuda[:N], --dtype fp16 */
	long cuda_dev;
};

struct capture {
	struct trace_writer *w;
	struct prof_forward *f;
};

static enum moe_status capture_cb(void *user, uint64_t step, size_t n)
{
	struct capture *c = user;
	return trace_writer_add_tokens(c->w, step, 0, n, NULL, prof_forward_ids(c->f),
				       prof_forward_gates(c->f), prof_forward_logits(c->f));
}

/* Resolves the layer's configuration from --weights / --model and scaling. */
static int resolve_cfg(const struct opts *o, struct prof_layer_cfg *c, int *layer, int *from_hf)
{
	enum moe_status st;
	struct moe_model m;

	*from_hf = 0;
	if (o->weights) {
		struct stat sb;
		if (stat(o->weights, &sb) != 0)
			return cli_usage(CMD, "--weights %s: no such file or folder", o->weights);
		if (S_ISDIR(sb.st_mode)) {
			st = prof_hf_config_load(o->weights, layer, c);
			if (st == MOE_OK) {
				*from_hf = 1;
				if (o->hidden || o->ffn || o->experts)
					return cli_usage(CMD, "--hidden, --ffn, --experts: the checkpoint fixes the shape");
				if (o->top_k)
					c->top_k = (int)o->top_k;
				if ((st = prof_layer_cfg_check(c)) != MOE_OK)
					return cli_fail(CMD, st);
				return 0;
			}
			if (st != MOE_ENOTFOUND)
				return cli_fail(CMD, st);
		}
		if (!o->model)
			return cli_usage(CMD, "--weights %s has no config.json: give --model for the shape",
					 o->weights);
	}
	if (!o->model)
		return cli_usage(CMD, "give --model PRESET|FILE or --weights DIR");
	if ((st = moe_model_load(o->model, &m)) != MOE_OK)
		return cli_fail(CMD, st);
	if ((st = prof_layer_cfg_from_model(&m, c)) != MOE_OK)
		return cli_fail(CMD, st);
	if (o->hidden)
		c->hidden = (int)o->hidden;
	if (o->ffn) {
		/* shared experts scale with the routed ones */
		if (c->shared_ffn)
			c->shared_ffn = (int)(c->shared_ffn / c->ffn * o->ffn);
		c->ffn = (int)o->ffn;
	}
	if (o->experts)
		c->experts = (int)o->experts;
	if (o->top_k)
		c->top_k = (int)o->top_k;
	if (*layer < 0)
		*layer = 0;
	if ((st = prof_layer_cfg_check(c)) != MOE_OK)
		return cli_usage(CMD, "%s", moe_errmsg());
	return 0;
}

static void fmt_num(char *buf, size_t n, double v, int prec)
{
	snprintf(buf, n, "%.*f", prec, v);
}

static char *inputs_json(const struct opts *o, const struct prof_layer_cfg *c, int layer, size_t tokens)
{
	json_t *j = json_object();
	char *s;
	json_object_set_new(j, "model", o->model ? json_string(o->model) : json_null());
	json_object_set_new(j, "weights", o->weights ? json_string(o->weights) : json_null());
	json_object_set_new(j, "model_type", json_string(c->model_type));
	json_object_set_new(j, "layer", json_integer(layer));
	json_object_set_new(j, "hidden", json_integer(c->hidden));
	json_object_set_new(j, "ffn", json_integer(c->ffn));
	json_object_set_new(j, "experts", json_integer(c->experts));
	json_object_set_new(j, "top_k", json_integer(c->top_k));
	json_object_set_new(j, "shared_ffn", json_integer(c->shared_ffn));
	json_object_set_new(j, "router", json_string(moe_route_kind_name(c->kind)));
	json_object_set_new(j, "groups", json_integer(c->groups));
	json_object_set_new(j, "groups_per_token", json_integer(c->groups_per_token));
	json_object_set_new(j, "routed_scaling", json_real(c->scaling));
	json_object_set_new(j, "norm_topk", json_boolean(c->norm));
	json_object_set_new(j, "tokens", json_integer((json_int_t)tokens));
	json_object_set_new(j, "threads", json_integer(o->threads));
	json_object_set_new(j, "reps", json_integer(o->reps));
	json_object_set_new(j, "warmup", json_integer(o->warmup));
	json_object_set_new(j, "input", o->input ? json_string(o->input) : json_null());
	json_object_set_new(j, "dtype", json_string("fp32"));
	s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	return s;
}

static json_t *summary_obj(const struct prof_machine *mc, const struct prof_result *r,
			   struct prof_forward *f, size_t tokens)
{
	json_t *j = json_object();
	json_object_set_new(j, "cpu", json_string(mc->cpu));
	json_object_set_new(j, "cores", json_integer(mc->cores));
	json_object_set_new(j, "threads", json_integer(mc->threads));
	json_object_set_new(j, "blas", json_string(mc->blas));
	json_object_set_new(j, "kernel", json_string(prof_forward_kernel(f)));
	json_object_set_new(j, "sgemm_roof_gflops", mc->sgemm_gflops > 0 ? json_real(mc->sgemm_gflops) : json_null());
	json_object_set_new(j, "load_average", json_real(mc->load_avg));
	json_object_set_new(j, "tokens", json_integer((json_int_t)tokens));
	json_object_set_new(j, "routed_rows", json_real(r->routed_rows));
	json_object_set_new(j, "dropped", json_real(r->dropped));
	json_object_set_new(j, "total_median_s", json_real(r->stage[PROF_STAGE_TOTAL].median_s));
	json_object_set_new(j, "gflops", json_real(r->gflops));
	json_object_set_new(j, "roof_fraction",
			    mc->sgemm_gflops > 0 ? json_real(r->gflops / mc->sgemm_gflops) : json_null());
	json_object_set_new(j, "peak_rss_bytes", json_real(r->peak_rss_bytes));
	json_object_set_new(j, "cpu_s", json_real(r->cpu_s));
	json_object_set_new(j, "cores_used", json_real(r->cores_used));
	json_object_set_new(j, "packed_bytes", json_real(prof_forward_bytes(f)));
	return j;
}

static double stage_gflops(const struct prof_result *r, int s)
{
	return r->flops[s] > 0 ? r->flops[s] / r->stage[s].median_s / 1e9 : 0;
}

static enum moe_status store_run(const struct opts *o, const char *inputs, json_t *summary,
				 const struct prof_result *r, struct prof_forward *f,
				 const struct prof_machine *mc, int layer, size_t tokens)
{
	struct store *db;
	int64_t id;
	enum moe_status st;
	const struct prof_layer_cfg *c = prof_forward_cfg(f);
	char *sum;
	struct store_run_meta meta = {"profile", o->label, o->model ? o->model : o->weights, NULL,
				      inputs, (uint64_t)o->seed};

	if ((st = store_open(o->db, STORE_WRITE, &db)) != MOE_OK)
		return st;
	if ((st = store_run_begin(db, &meta, &id)) != MOE_OK) {
		store_close(db);
		return st;
	}
	for (int s = 0; s < PROF_STAGE_COUNT && st == MOE_OK; s++) {
		struct store_stage_row row = {prof_stage_name((enum prof_stage)s), r->reps,
					      r->stage[s].median_s, r->stage[s].p10_s, r->stage[s].p90_s,
					      r->stage[s].min_s, stage_gflops(r, s), (double)tokens};
		st = store_stage_add(db, id, &row);
	}
	for (int e = 0; e < c->experts && st == MOE_OK; e++) {
		struct store_expert_row row = {layer, e, 0, (double)prof_forward_load(f)[e], 0};
		st = store_expert_add(db, id, &row);
	}
	if (st == MOE_OK)
		st = store_metric_add(db, id, "gflops", r->gflops, "GFLOP/s");
	if (st == MOE_OK && mc->sgemm_gflops > 0)
		st = store_metric_add(db, id, "sgemm_roof_gflops", mc->sgemm_gflops, "GFLOP/s");
	if (st == MOE_OK && mc->sgemm_gflops > 0)
		st = store_metric_add(db, id, "roof_fraction", r->gflops / mc->sgemm_gflops, "1");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "total_s", r->stage[PROF_STAGE_TOTAL].median_s, "s");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "peak_rss_bytes", r->peak_rss_bytes, "B");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "routed_rows", r->routed_rows, "1");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "dropped", r->dropped, "1");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "threads", mc->threads, "1");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "cores_used", r->cores_used, "1");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "cpu_s", r->cpu_s, "s");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "flops", r->flops[PROF_STAGE_TOTAL], "FLOP");
	if (st != MOE_OK) {
		st = store_run_abort(db, id, st);
		store_close(db);
		return st;
	}
	sum = json_dumps(summary, JSON_COMPACT | JSON_PRESERVE_ORDER);
	st = store_run_done(db, id, sum);
	free(sum);
	store_close(db);
	return st;
}

static void print_result(const struct opts *o, const struct prof_layer_cfg *c, int layer,
			 size_t tokens, const struct prof_machine *mc, const struct prof_result *r,
			 struct prof_forward *f, json_t *summary, const char *inputs)
{
	struct cli_table *t = cli_table_new("stages");
	const char *cols[] = {"stage", "median_ms", "p10_ms", "p90_ms", "min_ms", "share_%", "GFLOP/s"};
	double total = r->stage[PROF_STAGE_TOTAL].median_s;

	if (o->fmt == CLI_FORMAT_JSON) {
		json_t *root = json_object(), *stages = json_array();
		json_error_t jerr;
		for (int s = 0; s < PROF_STAGE_COUNT; s++) {
			json_t *row = json_object();
			json_object_set_new(row, "stage", json_string(prof_stage_name((enum prof_stage)s)));
			json_object_set_new(row, "median_s", json_real(r->stage[s].median_s));
			json_object_set_new(row, "p10_s", json_real(r->stage[s].p10_s));
			json_object_set_new(row, "p90_s", json_real(r->stage[s].p90_s));
			json_object_set_new(row, "min_s", json_real(r->stage[s].min_s));
			json_object_set_new(row, "gflops", json_real(stage_gflops(r, s)));
			json_array_append_new(stages, row);
		}
		json_object_set_new(root, "inputs", json_loads(inputs, 0, &jerr));
		json_object_set(root, "summary", summary);
		json_object_set_new(root, "stages", stages);
		json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
		json_decref(root);
		cli_table_free(t);
		return;
	}
	cli_table_note(t, "moekit %s profile: MoE layer forward, FP32, CPU", PACKAGE_VERSION);
	cli_table_note(t, "layer: %s%s%s layer %d: hidden %d, ffn %d, experts %d, top-%d%s, router %s%s",
		       c->model_type, o->weights ? " from " : "", o->weights ? o->weights : "", layer,
		       c->hidden, c->ffn, c->experts, c->top_k, c->shared_ffn ? " + shared" : "",
		       moe_route_kind_name(c->kind), c->groups > 1 ? " with groups" : "");
	cli_table_note(t, "tokens %zu, routed rows %.0f, dropped %.0f; reps %d after %d warm-up; seed %ld",
		       tokens, r->routed_rows, r->dropped, r->reps, r->warmup, o->seed);
	cli_table_note(t, "machine: %s, %d cores, %d threads; kernel %s; load average %.2f", mc->cpu,
		       mc->cores, mc->threads, prof_forward_kernel(f), mc->load_avg);
	cli_table_note(t, "blas: %s", mc->blas);
	if (mc->sgemm_gflops > 0)
		cli_table_note(t, "SGEMM roof %.1f GFLOP/s (%d^3); layer %.1f GFLOP/s = %.1f%% of roof",
			       mc->sgemm_gflops, mc->sgemm_n, r->gflops, 100 * r->gflops / mc->sgemm_gflops);
	else
		cli_table_note(t, "layer %.1f GFLOP/s (SGEMM roof not probed)", r->gflops);
	cli_table_note(t, "cores used %.2f (CPU time / wall time), %.1f GFLOP per CPU-second; peak memory %.1f MiB",
		       r->cores_used, r->cpu_s > 0 ? r->flops[PROF_STAGE_TOTAL] / r->cpu_s / 1e9 : 0.0,
		       r->peak_rss_bytes / 1048576.0);
	cli_table_note(t, "activation is fused into gate_up's epilogue");
	for (int i = 0; i < 7; i++)
		cli_table_col(t, cols[i], i == 0 ? CLI_COL_STR : CLI_COL_NUM);
	for (int s = 0; s < PROF_STAGE_COUNT; s++) {
		char v[6][32];
		const char *cells[7];
		fmt_num(v[0], 32, r->stage[s].median_s * 1e3, 3);
		fmt_num(v[1], 32, r->stage[s].p10_s * 1e3, 3);
		fmt_num(v[2], 32, r->stage[s].p90_s * 1e3, 3);
		fmt_num(v[3], 32, r->stage[s].min_s * 1e3, 3);
		fmt_num(v[4], 32, total > 0 ? 100 * r->stage[s].median_s / total : 0, 1);
		fmt_num(v[5], 32, stage_gflops(r, s), 1);
		cells[0] = prof_stage_name((enum prof_stage)s);
		for (int i = 0; i < 6; i++)
			cells[i + 1] = v[i];
		if (r->flops[s] <= 0)
			cells[6] = "";
		cli_table_row(t, cells);
	}
	cli_table_print(t, o->fmt, stdout);
	cli_table_free(t);
}

/* The layer, its weights and the input, shared by the single-process and
 * the expert-parallel runs (every rank builds the same from the seed).
 * Returns 0, or the exit status after printing the error. */
struct prepared {
	struct prof_layer_cfg c;
	struct prof_weights *w;
	float *x;
	size_t tokens;
	int layer;
};

static void prepared_release(struct prepared *p)
{
	prof_weights_free(p->w);
	free(p->x);
	p->w = NULL;
	p->x = NULL;
}

static int prepare(const struct opts *o, struct prepared *p)
{
	gsl_rng *rng = NULL;
	size_t rows = 0, cols = 0;
	int from_hf, rc;
	enum moe_status st;

	memset(p, 0, sizeof *p);
	p->tokens = (size_t)o->tokens;
	p->layer = (int)o->layer;
	if ((rc = resolve_cfg(o, &p->c, &p->layer, &from_hf)) != 0)
		return rc;
	if (o->input) {
		if ((st = prof_npy_read(o->input, &p->x, &rows, &cols)) != MOE_OK)
			return cli_fail(CMD, st);
		if (cols != (size_t)p->c.hidden) {
			prepared_release(p);
			return cli_usage(CMD, "--input %s: %zu columns, the layer's hidden size is %d", o->input,
					 cols, p->c.hidden);
		}
		if (o->tokens && (size_t)o->tokens != rows) {
			prepared_release(p);
			return cli_usage(CMD, "--tokens %ld disagrees with --input's %zu rows", o->tokens, rows);
		}
		p->tokens = rows;
	}
	if (!p->tokens)
		p->tokens = 512;
	rng = gsl_rng_alloc(gsl_rng_mt19937);
	gsl_rng_set(rng, (unsigned long)o->seed);
	if (o->weights) {
		if (!from_hf) {
			struct prof_st *stf;
			if ((st = prof_st_open(o->weights, &stf)) != MOE_OK)
				goto fail;
			p->c.arch = prof_arch_detect(stf, p->layer);
			prof_st_close(stf);
			if (p->c.arch == PROF_ARCH_NONE) {
				st = moe_error(MOE_EUNSUPPORTED,
					       "%s: no router tensor for layer %d under the Mixtral, Qwen/OLMoE or "
					       "DeepSeek-V3 names (model.layers.%d.block_sparse_moe.gate.weight, "
					       "model.layers.%d.mlp.gate.weight)", o->weights, p->layer, p->layer,
					       p->layer);
				goto fail;
			}
			p->c.has_bias = p->c.arch == PROF_ARCH_DEEPSEEK;
		}
		st = prof_weights_load(o->weights, p->layer, &p->c, &p->w);
	} else {
		st = prof_weights_random(&p->c, rng, &p->w);
	}
	if (st != MOE_OK)
		goto fail;
	if (!p->x) {
		size_t n = p->tokens * (size_t)p->c.hidden;
		if (!(p->x = malloc(n * sizeof(float)))) {
			st = moe_error(MOE_ENOMEM, "out of memory for %zu tokens", p->tokens);
			goto fail;
		}
		for (size_t i = 0; i < n; i++)
			p->x[i] = (float)(2.0 * gsl_rng_uniform(rng) - 1.0);
	}
	gsl_rng_free(rng);
	return 0;
fail:
	gsl_rng_free(rng);
	prepared_release(p);
	return cli_fail(CMD, st);
}

static int run_profile(struct opts *o)
{
	struct prepared pr;
	struct prof_layer_cfg c;
	struct prof_weights *w = NULL;
	struct prof_forward *f = NULL;
	struct prof_machine mc;
	struct prof_result res;
	struct capture cap = {NULL, NULL};
	float *x = NULL, *y = NULL;
	size_t tokens;
	int layer, rc = 0;
	enum moe_status st;
	char *inputs = NULL;
	json_t *summary = NULL;

	if ((rc = prepare(o, &pr)) != 0)
		return rc;
	c = pr.c;
	w = pr.w;
	x = pr.x;
	tokens = pr.tokens;
	layer = pr.layer;
	if (!(y = malloc(tokens * (size_t)c.hidden * sizeof(float)))) {
		st = moe_error(MOE_ENOMEM, "out of memory for %zu tokens", tokens);
		goto fail;
	}
	if (!o->quiet && isatty(STDERR_FILENO))
		fprintf(stderr, "moekit profile: probing and packing...\n");
	if ((st = prof_machine_probe((int)o->threads, o->probe, &mc)) != MOE_OK)
		goto fail;
	if ((st = prof_forward_new(w, (int)o->threads, tokens, &f)) != MOE_OK)
		goto fail;
	prof_weights_free(w);
	w = NULL;
	if (o->capture) {
		struct trace_header h;
		trace_header_init(&h, 1, (uint32_t)c.experts, (uint32_t)c.top_k, 1);
		h.flags = TRACE_F_WEIGHTS | TRACE_F_LOGITS;
		snprintf(h.model, sizeof h.model, "%s", c.model_type);
		if ((st = trace_writer_open(o->capture, &h, NULL, &cap.w)) != MOE_OK)
			goto fail;
		cap.f = f;
	}
	if ((st = prof_harness_run(f, x, tokens, y, (int)o->warmup, (int)o->reps,
				   cap.w ? capture_cb : NULL, &cap, &res)) != MOE_OK)
		goto fail;
	if (cap.w) {
		st = trace_writer_close(cap.w);
		cap.w = NULL;
		if (st != MOE_OK)
			goto fail;
	}
	if (o->output && (st = prof_npy_write(o->output, y, tokens, (size_t)c.hidden)) != MOE_OK)
		goto fail;
	inputs = inputs_json(o, &c, layer, tokens);
	summary = summary_obj(&mc, &res, f, tokens);
	if (o->db && (st = store_run(o, inputs, summary, &res, f, &mc, layer, tokens)) != MOE_OK)
		goto fail;
	print_result(o, &c, layer, tokens, &mc, &res, f, summary, inputs);
	rc = cli_finish_stdout(CMD);
	goto out;
fail:
	rc = cli_fail(CMD, st);
	/* a usage-class status from the library is still a runtime failure here
	 * when it came from a file (EINVAL is reserved for option values) */
out:
	trace_writer_abort(cap.w);
	json_decref(summary);
	free(inputs);
	prof_forward_free(f);
	prof_weights_free(w);
	free(x);
	free(y);
	return rc;
}

#ifdef HAVE_MPI
/* ---------------------------------------------------------------- MPI */

/* Whether every rank reports ok (collective). */
static int all_ok(int ok)
{
	int all = 0;
	MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
	return all;
}

static void mpi_begin(int *rank, int *ranks)
{
	int provided, inited = 0;
	MPI_Initialized(&inited);
	if (!inited)
		MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
	MPI_Comm_rank(MPI_COMM_WORLD, rank);
	MPI_Comm_size(MPI_COMM_WORLD, ranks);
	/* one line per error: only rank 0 speaks */
	if (*rank != 0 && !freopen("/dev/null", "w", stderr))
		return;
}

static enum moe_status store_ep(const struct opts *o, const char *inputs, const char *summary,
				const struct prof_ep_result *r, size_t tokens)
{
	struct store *db;
	int64_t id;
	enum moe_status st;
	struct store_run_meta meta = {"profile", o->label, o->model ? o->model : o->weights, NULL,
				      inputs, (uint64_t)o->seed};

	if ((st = store_open(o->db, STORE_WRITE, &db)) != MOE_OK)
		return st;
	if ((st = store_run_begin(db, &meta, &id)) != MOE_OK) {
		store_close(db);
		return st;
	}
	for (int s = 0; s < PROF_EP_STAGE_COUNT && st == MOE_OK; s++) {
		struct store_stage_row row = {prof_ep_stage_name((enum prof_ep_stage)s), r->reps,
					      r->stage[s].median_s, r->stage[s].p10_s, r->stage[s].p90_s,
					      r->stage[s].min_s,
					      s == PROF_EP_TOTAL ? r->gflops : 0, (double)tokens};
		st = store_stage_add(db, id, &row);
	}
	if (st == MOE_OK)
		st = store_metric_add(db, id, "gflops", r->gflops, "GFLOP/s");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "total_s", r->stage[PROF_EP_TOTAL].median_s, "s");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "dispatch_s", r->stage[PROF_EP_DISPATCH].median_s, "s");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "combine_s", r->stage[PROF_EP_COMBINE_A2A].median_s, "s");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "dispatch_bytes", r->dispatch_bytes, "B");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "ranks", r->ranks, "1");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "routed_rows", r->routed_rows, "1");
	if (st != MOE_OK) {
		st = store_run_abort(db, id, st);
		store_close(db);
		return st;
	}
	st = store_run_done(db, id, summary);
	store_close(db);
	return st;
}

static int run_ep(struct opts *o, long ep)
{
	struct prepared pr;
	struct prof_ep *e = NULL;
	struct prof_ep_result res;
	struct prof_machine mc;
	int rank, ranks, rc = 0;
	enum moe_status st = MOE_OK;
	size_t first, count, H;
	float *y = NULL, *yall = NULL;

	mpi_begin(&rank, &ranks);
	if (ranks != ep) {
		rc = cli_usage(CMD, "--ep %ld but %d ranks are running: start it as mpirun -np %ld moekit profile --ep %ld ...",
			       ep, ranks, ep, ep);
		MPI_Finalize();
		return rc;
	}
	if (o->capture) {
		rc = cli_usage(CMD, "--capture: capture a single-process run (drop --ep)");
		MPI_Finalize();
		return rc;
	}
	rc = prepare(o, &pr);
	if (!all_ok(rc == 0)) {
		prepared_release(&pr);
		MPI_Finalize();
		return rc ? rc : 1;
	}
	H = (size_t)pr.c.hidden;
	if (rank == 0)
		st = prof_machine_probe((int)o->threads, o->probe, &mc);
	if (st == MOE_OK)
		st = prof_ep_new(pr.w, MPI_COMM_WORLD, (int)o->threads, pr.tokens, &e);
	if (!all_ok(st == MOE_OK)) {
		rc = st != MOE_OK ? cli_fail(CMD, st) : 1;
		prof_ep_free(e);
		prepared_release(&pr);
		MPI_Finalize();
		return rc;
	}
	prof_weights_free(pr.w);
	pr.w = NULL;
	prof_ep_tokens(e, &first, &count);
	if (!(y = malloc(count * H * sizeof(float)))) {
		fprintf(stderr, "moekit profile: out of memory\n");
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	if ((st = prof_ep_profile(e, pr.x + first * H, y, (int)o->warmup, (int)o->reps, &res)) != MOE_OK) {
		/* a rank that fails mid-collective would leave the others waiting */
		rc = cli_fail(CMD, st);
		MPI_Abort(MPI_COMM_WORLD, rc);
	}
	if (o->output) {
		int *cnt = NULL, *dsp = NULL, mine = (int)(count * H);
		if (rank == 0) {
			cnt = calloc((size_t)ranks, sizeof(int));
			dsp = calloc((size_t)ranks, sizeof(int));
			yall = malloc(pr.tokens * H * sizeof(float));
		}
		MPI_Gather(&mine, 1, MPI_INT, cnt, 1, MPI_INT, 0, MPI_COMM_WORLD);
		if (rank == 0)
			for (int r = 1; r < ranks; r++)
				dsp[r] = dsp[r - 1] + cnt[r - 1];
		MPI_Gatherv(y, mine, MPI_FLOAT, yall, cnt, dsp, MPI_FLOAT, 0, MPI_COMM_WORLD);
		if (rank == 0)
			st = prof_npy_write(o->output, yall, pr.tokens, H);
		free(cnt);
		free(dsp);
	}
	if (rank == 0 && st == MOE_OK) {
		json_t *sj = json_object(), *ij;
		char *inputs = inputs_json(o, &pr.c, pr.layer, pr.tokens), *sum;
		json_error_t jerr;
		struct cli_table *t = cli_table_new("stages");
		const char *cols[] = {"stage", "median_ms", "p10_ms", "p90_ms", "min_ms", "share_%"};
		double total = res.stage[PROF_EP_TOTAL].median_s;

		ij = json_loads(inputs, 0, &jerr);
		json_object_set_new(ij, "ep", json_integer(ep));
		free(inputs);
		inputs = json_dumps(ij, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_object_set_new(sj, "cpu", json_string(mc.cpu));
		json_object_set_new(sj, "blas", json_string(mc.blas));
		json_object_set_new(sj, "ranks", json_integer(ranks));
		json_object_set_new(sj, "threads_per_rank", json_integer(o->threads));
		json_object_set_new(sj, "gflops", json_real(res.gflops));
		json_object_set_new(sj, "dispatch_bytes", json_real(res.dispatch_bytes));
		json_object_set_new(sj, "routed_rows", json_real(res.routed_rows));
		json_object_set_new(sj, "sgemm_roof_gflops_rank0",
				    mc.sgemm_gflops > 0 ? json_real(mc.sgemm_gflops) : json_null());
		sum = json_dumps(sj, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (o->db)
			st = store_ep(o, inputs, sum, &res, pr.tokens);
		if (st == MOE_OK && o->fmt == CLI_FORMAT_JSON) {
			json_t *root = json_object(), *stages = json_array();
			for (int s2 = 0; s2 < PROF_EP_STAGE_COUNT; s2++) {
				json_t *row = json_object();
				json_object_set_new(row, "stage", json_string(prof_ep_stage_name((enum prof_ep_stage)s2)));
				json_object_set_new(row, "median_s", json_real(res.stage[s2].median_s));
				json_object_set_new(row, "p10_s", json_real(res.stage[s2].p10_s));
				json_object_set_new(row, "p90_s", json_real(res.stage[s2].p90_s));
				json_object_set_new(row, "min_s", json_real(res.stage[s2].min_s));
				json_array_append_new(stages, row);
			}
			json_object_set(root, "inputs", ij);
			json_object_set(root, "summary", sj);
			json_object_set_new(root, "stages", stages);
			json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
			fputc('\n', stdout);
			json_decref(root);
		} else if (st == MOE_OK) {
			cli_table_note(t, "moekit %s profile --ep %ld: expert parallelism over MPI, FP32, CPU",
				       PACKAGE_VERSION, ep);
			cli_table_note(t, "layer: %s layer %d: hidden %d, ffn %d, experts %d (%d per rank), top-%d%s",
				       pr.c.model_type, pr.layer, pr.c.hidden, pr.c.ffn, pr.c.experts,
				       pr.c.experts / ranks, pr.c.top_k, pr.c.shared_ffn ? " + shared" : "");
			cli_table_note(t, "tokens %zu (%zu on rank 0), routed rows %.0f; reps %d after %d warm-up; seed %ld",
				       pr.tokens, count, res.routed_rows, res.reps, res.warmup, o->seed);
			cli_table_note(t, "ranks %d x %ld threads; dispatch %.0f bytes to other ranks per forward",
				       ranks, o->threads, res.dispatch_bytes);
			cli_table_note(t, "machine (rank 0): %s; %.1f GFLOP/s over all ranks; stage times: max over ranks",
				       mc.cpu, res.gflops);
			for (int i = 0; i < 6; i++)
				cli_table_col(t, cols[i], i == 0 ? CLI_COL_STR : CLI_COL_NUM);
			for (int s2 = 0; s2 < PROF_EP_STAGE_COUNT; s2++) {
				char v[5][32];
				const char *cells[6];
				fmt_num(v[0], 32, res.stage[s2].median_s * 1e3, 3);
				fmt_num(v[1], 32, res.stage[s2].p10_s * 1e3, 3);
				fmt_num(v[2], 32, res.stage[s2].p90_s * 1e3, 3);
				fmt_num(v[3], 32, res.stage[s2].min_s * 1e3, 3);
				fmt_num(v[4], 32, total > 0 ? 100 * res.stage[s2].median_s / total : 0, 1);
				cells[0] = prof_ep_stage_name((enum prof_ep_stage)s2);
				for (int i = 0; i < 5; i++)
					cells[i + 1] = v[i];
				cli_table_row(t, cells);
			}
			cli_table_print(t, o->fmt, stdout);
		}
		cli_table_free(t);
		json_decref(ij);
		json_decref(sj);
		free(inputs);
		free(sum);
	}
	rc = st == MOE_OK ? (rank == 0 ? cli_finish_stdout(CMD) : 0) : cli_fail(CMD, st);
	prof_ep_free(e);
	prepared_release(&pr);
	free(y);
	free(yall);
	MPI_Finalize();
	return rc;
}
#endif

/* --device: "cpu", "cuda" or "cuda:N".  Returns 1, or 0 after printing the
 * usage error. */
static int parse_device(const char *s, int *cuda, long *dev)
{
	*cuda = 0;
	*dev = 0;
	if (strcmp(s, "cpu") == 0)
		return 1;
	if (strncmp(s, "cuda", 4) == 0 && (s[4] == '\0' || s[4] == ':')) {
		*cuda = 1;
		return s[4] == '\0' || cli_parse_long(CMD, "--device cuda:N", s + 5, 0, 1023, dev);
	}
	cli_usage(CMD, "--device %s: expected cpu, cuda or cuda:N", s);
	return 0;
}

/* Whether the a2a arguments ask for --device cuda (the NCCL benchmark). */
static int a2a_wants_cuda(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
			return strncmp(argv[i + 1], "cuda", 4) == 0;
		if (strncmp(argv[i], "--device=", 9) == 0)
			return strncmp(argv[i] + 9, "cuda", 4) == 0;
	}
	return 0;
}

#ifdef HAVE_CUDA
/* ------------------------------------------------------------- CUDA */

static json_t *cuda_summary(const struct prof_cuda *g, const struct prof_result *r, size_t tokens)
{
	const struct prof_cuda_device *d = prof_cuda_dev(g);
	json_t *j = json_object();
	char cc[16];

	snprintf(cc, sizeof cc, "%d.%d", d->cc_major, d->cc_minor);
	json_object_set_new(j, "gpu", json_string(d->name));
	json_object_set_new(j, "gpu_index", json_integer(d->index));
	json_object_set_new(j, "compute_capability", json_string(cc));
	json_object_set_new(j, "sms", json_integer(d->sm_count));
	json_object_set_new(j, "gpu_memory_bytes", json_real(d->mem_bytes));
	json_object_set_new(j, "sm_clock_hz", json_real(d->sm_clock_hz));
	json_object_set_new(j, "mem_clock_hz", json_real(d->mem_clock_hz));
	json_object_set_new(j, "mem_bus_bits", json_integer(d->mem_bus_bits));
	json_object_set_new(j, "cuda_driver", json_integer(d->driver_version));
	json_object_set_new(j, "cuda_runtime", json_integer(d->runtime_version));
	json_object_set_new(j, "cublas", json_integer(d->cublas_version));
	json_object_set_new(j, "nccl", json_integer(d->nccl_version));
	json_object_set_new(j, "expert_gemms", json_string(prof_cuda_gemm_name(g)));
	json_object_set_new(j, "tokens", json_integer((json_int_t)tokens));
	json_object_set_new(j, "routed_rows", json_real(r->routed_rows));
	json_object_set_new(j, "dropped", json_real(r->dropped));
	json_object_set_new(j, "total_median_s", json_real(r->stage[PROF_STAGE_TOTAL].median_s));
	json_object_set_new(j, "gflops", json_real(r->gflops));
	json_object_set_new(j, "device_bytes", json_real(prof_cuda_bytes(g)));
	return j;
}

static enum moe_status store_cuda(const struct opts *o, const char *inputs, json_t *summary,
				  const struct prof_result *r, const struct prof_cuda *g, int layer,
				  size_t tokens)
{
	struct store *db;
	int64_t id;
	enum moe_status st;
	char *sum;
	struct store_run_meta meta = {"profile", o->label, o->model ? o->model : o->weights, NULL,
				      inputs, (uint64_t)o->seed};

	if ((st = store_open(o->db, STORE_WRITE, &db)) != MOE_OK)
		return st;
	if ((st = store_run_begin(db, &meta, &id)) != MOE_OK) {
		store_close(db);
		return st;
	}
	for (int s = 0; s < PROF_STAGE_COUNT && st == MOE_OK; s++) {
		struct store_stage_row row = {prof_stage_name((enum prof_stage)s), r->reps,
					      r->stage[s].median_s, r->stage[s].p10_s, r->stage[s].p90_s,
					      r->stage[s].min_s, stage_gflops(r, s), (double)tokens};
		st = store_stage_add(db, id, &row);
	}
	for (int e = 0; e < prof_cuda_cfg(g)->experts && st == MOE_OK; e++) {
		struct store_expert_row row = {layer, e, 0, (double)prof_cuda_load(g)[e], 0};
		st = store_expert_add(db, id, &row);
	}
	if (st == MOE_OK)
		st = store_metric_add(db, id, "gflops", r->gflops, "GFLOP/s");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "total_s", r->stage[PROF_STAGE_TOTAL].median_s, "s");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "routed_rows", r->routed_rows, "1");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "dropped", r->dropped, "1");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "device_bytes", prof_cuda_bytes(g), "B");
	if (st == MOE_OK)
		st = store_metric_add(db, id, "flops", r->flops[PROF_STAGE_TOTAL], "FLOP");
	if (st != MOE_OK) {
		st = store_run_abort(db, id, st);
		store_close(db);
		return st;
	}
	sum = json_dumps(summary, JSON_COMPACT | JSON_PRESERVE_ORDER);
	st = store_run_done(db, id, sum);
	free(sum);
	store_close(db);
	return st;
}

static void print_cuda(const struct opts *o, const struct prof_layer_cfg *c, int layer, size_t tokens,
		       const struct prof_result *r, const struct prof_cuda *g, json_t *summary,
		       const char *inputs)
{
	const struct prof_cuda_device *d = prof_cuda_dev(g);
	struct cli_table *t;
	const char *cols[] = {"stage", "median_ms", "p10_ms", "p90_ms", "min_ms", "share_%", "GFLOP/s"};
	double total = r->stage[PROF_STAGE_TOTAL].median_s;

	if (o->fmt == CLI_FORMAT_JSON) {
		json_t *root = json_object(), *stages = json_array();
		json_error_t jerr;
		for (int s = 0; s < PROF_STAGE_COUNT; s++) {
			json_t *row = json_object();
			json_object_set_new(row, "stage", json_string(prof_stage_name((enum prof_stage)s)));
			json_object_set_new(row, "median_s", json_real(r->stage[s].median_s));
			json_object_set_new(row, "p10_s", json_real(r->stage[s].p10_s));
			json_object_set_new(row, "p90_s", json_real(r->stage[s].p90_s));
			json_object_set_new(row, "min_s", json_real(r->stage[s].min_s));
			json_object_set_new(row, "gflops", json_real(stage_gflops(r, s)));
			json_array_append_new(stages, row);
		}
		json_object_set_new(root, "inputs", json_loads(inputs, 0, &jerr));
		json_object_set(root, "summary", summary);
		json_object_set_new(root, "stages", stages);
		json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
		json_decref(root);
		return;
	}
	t = cli_table_new("stages");
	cli_table_note(t, "moekit %s profile: MoE layer forward, %s with FP32 accumulation, CUDA",
		       PACKAGE_VERSION, o->fp16 ? "FP16" : "BF16");
	cli_table_note(t, "layer: %s%s%s layer %d: hidden %d, ffn %d, experts %d, top-%d%s, router %s%s",
		       c->model_type, o->weights ? " from " : "", o->weights ? o->weights : "", layer,
		       c->hidden, c->ffn, c->experts, c->top_k, c->shared_ffn ? " + shared" : "",
		       moe_route_kind_name(c->kind), c->groups > 1 ? " with groups" : "");
	cli_table_note(t, "tokens %zu, routed rows %.0f, dropped %.0f; reps %d after %d warm-up; seed %ld",
		       tokens, r->routed_rows, r->dropped, r->reps, r->warmup, o->seed);
	cli_table_note(t, "gpu %d: %s, sm_%d%d, %d SMs, %.1f GiB, SM clock %.0f MHz", d->index, d->name,
		       d->cc_major, d->cc_minor, d->sm_count, d->mem_bytes / 1073741824.0,
		       d->sm_clock_hz / 1e6);
	cli_table_note(t, "CUDA driver %d, runtime %d, cuBLAS %d; expert GEMMs %s; times from CUDA events",
		       d->driver_version, d->runtime_version, d->cublas_version, prof_cuda_gemm_name(g));
	cli_table_note(t, "layer %.1f GFLOP/s; %.1f MiB on the device", r->gflops,
		       prof_cuda_bytes(g) / 1048576.0);
	for (int i = 0; i < 7; i++)
		cli_table_col(t, cols[i], i == 0 ? CLI_COL_STR : CLI_COL_NUM);
	for (int s = 0; s < PROF_STAGE_COUNT; s++) {
		char v[6][32];
		const char *cells[7];
		fmt_num(v[0], 32, r->stage[s].median_s * 1e3, 3);
		fmt_num(v[1], 32, r->stage[s].p10_s * 1e3, 3);
		fmt_num(v[2], 32, r->stage[s].p90_s * 1e3, 3);
		fmt_num(v[3], 32, r->stage[s].min_s * 1e3, 3);
		fmt_num(v[4], 32, total > 0 ? 100 * r->stage[s].median_s / total : 0, 1);
		fmt_num(v[5], 32, stage_gflops(r, s), 1);
		cells[0] = prof_stage_name((enum prof_stage)s);
		for (int i = 0; i < 6; i++)
			cells[i + 1] = v[i];
		if (r->flops[s] <= 0)
			cells[6] = "";
		cli_table_row(t, cells);
	}
	cli_table_print(t, o->fmt, stdout);
	cli_table_free(t);
}

static int run_profile_cuda(struct opts *o)
{
	struct prepared pr;
	struct prof_cuda *g = NULL;
	struct prof_cuda_opts co = PROF_CUDA_OPTS_INIT;
	struct prof_result res;
	float *y = NULL;
	char *inputs = NULL;
	json_t *summary = NULL;
	enum moe_status st;
	int rc;

	if (o->capture)
		return cli_usage(CMD, "--capture: capture a CPU run (drop --device cuda; the routing is the same)");
	if ((rc = prepare(o, &pr)) != 0)
		return rc;
	co.device = (int)o->cuda_dev;
	co.dtype = o->fp16 ? PROF_CUDA_FP16 : PROF_CUDA_BF16;
	if (!(y = malloc(pr.tokens * (size_t)pr.c.hidden * sizeof(float)))) {
		st = moe_error(MOE_ENOMEM, "out of memory for %zu tokens", pr.tokens);
		goto fail;
	}
	if (!o->quiet && isatty(STDERR_FILENO))
		fprintf(stderr, "moekit profile: uploading the weights to GPU %ld...\n", o->cuda_dev);
	if ((st = prof_cuda_new(pr.w, &co, pr.tokens, &g)) != MOE_OK)
		goto fail;
	prof_weights_free(pr.w);
	pr.w = NULL;
	if ((st = prof_cuda_profile(g, pr.x, pr.tokens, y, (int)o->warmup, (int)o->reps, &res)) != MOE_OK)
		goto fail;
	if (o->output && (st = prof_npy_write(o->output, y, pr.tokens, (size_t)pr.c.hidden)) != MOE_OK)
		goto fail;
	{
		json_error_t jerr;
		char *base = inputs_json(o, &pr.c, pr.layer, pr.tokens);
		json_t *ij = json_loads(base, 0, &jerr);
		free(base);
		json_object_del(ij, "threads");
		json_object_set_new(ij, "device", json_string("cuda"));
		json_object_set_new(ij, "gpu", json_integer(co.device));
		json_object_set_new(ij, "dtype", json_string(prof_cuda_dtype_name(co.dtype)));
		inputs = json_dumps(ij, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(ij);
	}
	summary = cuda_summary(g, &res, pr.tokens);
	if (o->db && (st = store_cuda(o, inputs, summary, &res, g, pr.layer, pr.tokens)) != MOE_OK)
		goto fail;
	print_cuda(o, &pr.c, pr.layer, pr.tokens, &res, g, summary, inputs);
	rc = cli_finish_stdout(CMD);
	goto out;
fail:
	rc = cli_fail(CMD, st);
out:
	json_decref(summary);
	free(inputs);
	prof_cuda_free(g);
	prepared_release(&pr);
	free(y);
	return rc;
}
#endif

/* ------------------------------------------------ all-to-all benchmark */

#if defined(HAVE_MPI) || defined(HAVE_CUDA)
/* `moekit profile a2a` has two back ends: MPI_Alltoall between the ranks of
 * mpirun, and NCCL between the GPUs of this node (--device cuda).  They
 * share the options, the size sweep, the table and the stored run; struct
 * a2a_bench holds what differs: the help, the words of the preamble and the
 * stored inputs, and the measurement itself. */

#define A2A_MAX_SIZES 64

struct a2a_opts {
	double min_B, max_B;    /* the sweep: bytes each peer sends in total */
	long iters, warmup;
	long peers;             /* ranks or GPUs taking part (NCCL: 0 until set) */
	const char *db, *label;
	enum cli_format fmt;
};

struct a2a_bench {
	const char *usage;      /* the --help text */
	const char *label;      /* the stored run's label without --label */
	int cuda;               /* takes --device (cuda required) and --gpus */
	const char *method;     /* preamble: what is timed ("MPI_Alltoall") */
	const char *peers;      /* preamble: who takes part ("ranks") */
	const char *peer;       /* one of them ("rank") */
	const char *letter;     /* their count in the busbw formula ("R") */
	const char *inputs;     /* stored inputs: JSON members before the count */
	const char *count_key;  /* stored inputs: the count's key ("ranks") */
	/* One point of the sweep, about `bytes` sent by each peer in total:
	 * *time_s the mean of one call over o->iters after o->warmup, maximum
	 * over the peers; *size_B the bytes each peer really sent (the request
	 * rounded as the back end needs).  Returns MOE_OK or the back end's
	 * error (recorded). */
	enum moe_status (*measure)(const struct a2a_opts *o, size_t bytes, double *time_s,
				   double *size_B);
};

/* Parses the a2a options for back end b into *o (peers left 0).  Returns
 * -1 to go on, or the exit status: --help printed, or a usage error. */
static int a2a_parse(const struct a2a_bench *b, int argc, char **argv, struct a2a_opts *o)
{
	/* --device and --gpus are the NCCL back end's own: the MPI one parses
	 * with lopts + 2, where they stay unknown options */
	static const struct option lopts[] = {
		{"device", required_argument, NULL, 'D'},
		{"gpus", required_argument, NULL, 'g'},
		{"min-bytes", required_argument, NULL, 'a'},
		{"max-bytes", required_argument, NULL, 'b'},
		{"iters", required_argument, NULL, 'i'},
		{"warmup", required_argument, NULL, 'w'},
		{"db", required_argument, NULL, 'd'},
		{"label", required_argument, NULL, 'L'},
		{"format", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	long dev;
	int c, cuda = 0;

	memset(o, 0, sizeof *o);
	o->min_B = 1024;
	o->max_B = 64.0 * 1048576;
	o->iters = 20;
	o->warmup = 5;
	o->label = b->label;
	o->fmt = CLI_FORMAT_TABLE;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", b->cuda ? lopts : lopts + 2, NULL)) != -1) {
		switch (c) {
		case 'D': if (!parse_device(optarg, &cuda, &dev)) return 2; break;
		case 'g': if (!cli_parse_long(CMD, "--gpus", optarg, 1, 256, &o->peers)) return 2; break;
		case 'a':
		case 'b': {
			double v;
			if (moe_units_parse(optarg, MOE_UNIT_BYTES, &v) != MOE_OK || v < 4 || v > 4e9)
				return cli_usage(CMD, "--%s-bytes %s: expected a size from 4B to 4GB",
						 c == 'a' ? "min" : "max", optarg);
			if (c == 'a')
				o->min_B = v;
			else
				o->max_B = v;
			break;
		}
		case 'i': if (!cli_parse_long(CMD, "--iters", optarg, 1, 1000000, &o->iters)) return 2; break;
		case 'w': if (!cli_parse_long(CMD, "--warmup", optarg, 0, 1000000, &o->warmup)) return 2; break;
		case 'd': o->db = optarg; break;
		case 'L': o->label = optarg; break;
		case 'f': if (!cli_parse_format(CMD, optarg, &o->fmt)) return 2; break;
		case 'h': fputs(b->usage, stdout); return cli_finish_stdout(CMD);
		default: return cli_bad_option(CMD, argc, argv);
		}
	}
	if (optind < argc)
		return cli_usage(CMD, "a2a: unexpected argument '%s'", argv[optind]);
	/* only reached through a2a_wants_cuda, which read the first --device */
	if (b->cuda && !cuda)
		return cli_usage(CMD, "a2a: --device cpu: the CPU all-to-all runs over MPI (drop --device)");
	if (o->min_B > o->max_B)
		return cli_usage(CMD, "--min-bytes is larger than --max-bytes");
	return -1;
}

/* Measures the sizes doubling from o->min_B up to o->max_B (at most
 * A2A_MAX_SIZES of them) into size_B[] and time_s[], *n of them.  A size
 * that rounds (to whole elements per peer) to the one before it is measured
 * once: one row and one stored stage per size.  Returns MOE_OK, or the
 * first failed measurement's status. */
static enum moe_status a2a_sweep(const struct a2a_bench *b, const struct a2a_opts *o,
				 double *size_B, double *time_s, int *n)
{
	enum moe_status st;

	*n = 0;
	for (double x = o->min_B; x <= o->max_B && *n < A2A_MAX_SIZES; x *= 2) {
		if ((st = b->measure(o, (size_t)x, &time_s[*n], &size_B[*n])) != MOE_OK)
			return st;
		if (*n == 0 || size_B[*n] != size_B[*n - 1])
			(*n)++;
	}
	return MOE_OK;
}

/* busbw from algbw over R peers (nccl-tests' alltoall): algbw (R - 1) / R. */
static double a2a_busbw(double algbw, long peers)
{
	return algbw * (double)(peers - 1) / (double)peers;
}

/* Stores the sweep as a run of kind profile in o->db: one stage per size
 * (the mean time as every statistic), algbw and busbw per size and the mean
 * busbw.  Returns MOE_OK or the store's error (the run marked failed when it
 * was begun). */
static enum moe_status a2a_store(const struct a2a_bench *b, const struct a2a_opts *o,
				 const double *size_B, const double *time_s, int n, double avg_bus)
{
	struct store *s;
	int64_t id;
	char inputs[256], name[64];
	struct store_run_meta meta = {"profile", o->label, NULL, NULL, inputs, 0};
	enum moe_status st;

	snprintf(inputs, sizeof inputs,
		 "{\"benchmark\":\"alltoall\",%s\"%s\":%ld,\"iters\":%ld,\"warmup\":%ld,"
		 "\"min_bytes\":%.0f,\"max_bytes\":%.0f}", b->inputs, b->count_key, o->peers,
		 o->iters, o->warmup, o->min_B, o->max_B);
	if ((st = store_open(o->db, STORE_WRITE, &s)) != MOE_OK)
		return st;
	if ((st = store_run_begin(s, &meta, &id)) == MOE_OK) {
		for (int i = 0; i < n && st == MOE_OK; i++) {
			double alg = size_B[i] / time_s[i];
			struct store_stage_row row = {name, (int)o->iters, time_s[i], time_s[i],
						      time_s[i], time_s[i], 0, 0};
			snprintf(name, sizeof name, "alltoall %.0fB", size_B[i]);
			st = store_stage_add(s, id, &row);
			snprintf(name, sizeof name, "algbw_Bps@%.0f", size_B[i]);
			if (st == MOE_OK)
				st = store_metric_add(s, id, name, alg, "B/s");
			snprintf(name, sizeof name, "busbw_Bps@%.0f", size_B[i]);
			if (st == MOE_OK)
				st = store_metric_add(s, id, name, a2a_busbw(alg, o->peers), "B/s");
		}
		if (st == MOE_OK)
			st = store_metric_add(s, id, "avg_busbw_Bps", avg_bus, "B/s");
		if (st == MOE_OK)
			st = store_run_done(s, id, NULL);
		else
			st = store_run_abort(s, id, st);
	}
	store_close(s);
	return st;
}

/* The results of a sweep, from one process (MPI: rank 0): stored when
 * o->db, then printed in o->fmt as nccl-tests prints them.  Returns MOE_OK,
 * or the store's error with nothing printed. */
static enum moe_status a2a_report(const struct a2a_bench *b, const struct a2a_opts *o,
				  const double *size_B, const double *time_s, int n)
{
	static const char *const cols[] = {"size_B", "count", "type", "time_us", "algbw_GBps",
					   "busbw_GBps"};
	struct cli_table *t = cli_table_new("alltoall");
	double sum_bus = 0;
	enum moe_status st = MOE_OK;

	for (int i = 0; i < 6; i++)
		cli_table_col(t, cols[i], i == 2 ? CLI_COL_STR : CLI_COL_NUM);
	cli_table_note(t, "moekit %s profile a2a: %s, %ld %s, %ld iters after %ld warm-up",
		       PACKAGE_VERSION, b->method, o->peers, b->peers, o->iters, o->warmup);
	cli_table_note(t, "size: bytes each %s sends in total (size / %ld to each %s); time: mean per call, max over %ss",
		       b->peer, o->peers, b->peer, b->peer);
	cli_table_note(t, "algbw = size / time; busbw = algbw x (%s-1)/%s (nccl-tests' alltoall definitions)",
		       b->letter, b->letter);
	for (int i = 0; i < n; i++) {
		char v[5][32];
		const char *cells[6];
		double alg = size_B[i] / time_s[i], bus = a2a_busbw(alg, o->peers);
		sum_bus += bus;
		snprintf(v[0], 32, "%.0f", size_B[i]);
		snprintf(v[1], 32, "%.0f", size_B[i] / sizeof(float));
		snprintf(v[2], 32, "%.2f", time_s[i] * 1e6);
		snprintf(v[3], 32, "%.3f", alg / 1e9);
		snprintf(v[4], 32, "%.3f", bus / 1e9);
		cells[0] = v[0]; cells[1] = v[1]; cells[2] = "float";
		cells[3] = v[2]; cells[4] = v[3]; cells[5] = v[4];
		cli_table_row(t, cells);
	}
	if (o->fmt == CLI_FORMAT_TABLE)
		cli_table_note(t, "avg bus bandwidth over sizes: %.3f GB/s", n ? sum_bus / n / 1e9 : 0.0);
	if (o->db)
		st = a2a_store(b, o, size_B, time_s, n, n ? sum_bus / n : 0);
	if (st == MOE_OK)
		cli_table_print(t, o->fmt, stdout);
	cli_table_free(t);
	return st;
}
#endif

#ifdef HAVE_MPI
static const char a2a_usage[] =
	"Usage: mpirun -np R moekit profile a2a [options]\n\n"
	"All-to-all microbenchmark over MPI (MPI_Alltoall of float32), sweeping the\n"
	"bytes each rank sends in total, doubling from --min-bytes to --max-bytes.\n"
	"Per size: the mean time of one call over --iters (after --warmup), maximum\n"
	"over ranks; algorithm bandwidth algbw = bytes / time and bus bandwidth\n"
	"busbw = algbw x (R - 1) / R, as nccl-tests defines them for alltoall.  The\n"
	"data received is checked.\n\n"
	"Options:\n"
	"  --min-bytes SIZE   smallest size (default 1KiB; units as 64KiB, 1MB)\n"
	"  --max-bytes SIZE   largest size (default 64MiB)\n"
	"  --iters N          timed calls per size (default 20)\n"
	"  --warmup N         untimed calls per size (default 5)\n"
	"  --db FILE          store a run of kind profile (label a2a unless --label)\n"
	"  --label TEXT       label of the stored run\n"
	"  --format FMT       table (default), csv or json\n"
	"  -h, --help         show this help\n";

static enum moe_status a2a_mpi_measure(const struct a2a_opts *o, size_t bytes, double *time_s,
				       double *size_B)
{
	/* prof_a2a_run sends bytes / R rounded down to whole floats, at least one */
	size_t per = bytes / sizeof(float) / (size_t)o->peers;

	*size_B = (double)((per ? per : 1) * (size_t)o->peers * sizeof(float));
	return prof_a2a_run(MPI_COMM_WORLD, bytes, (int)o->warmup, (int)o->iters, time_s);
}

static const struct a2a_bench a2a_mpi = {
	.usage = a2a_usage,
	.label = "a2a",
	.cuda = 0,
	.method = "MPI_Alltoall",
	.peers = "ranks",
	.peer = "rank",
	.letter = "R",
	.inputs = "",
	.count_key = "ranks",
	.measure = a2a_mpi_measure,
};

static int run_a2a(int argc, char **argv)
{
	struct a2a_opts o;
	double size_B[A2A_MAX_SIZES], time_s[A2A_MAX_SIZES];
	int rc, rank, ranks, n;
	enum moe_status st;

	if ((rc = a2a_parse(&a2a_mpi, argc, argv, &o)) >= 0)
		return rc;
	mpi_begin(&rank, &ranks);
	o.peers = ranks;
	st = a2a_sweep(&a2a_mpi, &o, size_B, time_s, &n);
	if (rank == 0 && st == MOE_OK)
		st = a2a_report(&a2a_mpi, &o, size_B, time_s, n);
	rc = st == MOE_OK ? (rank == 0 ? cli_finish_stdout(CMD) : 0) : cli_fail(CMD, st);
	MPI_Finalize();
	return rc;
}
#endif

#ifdef HAVE_CUDA
static const char a2a_cuda_usage[] =
	"Usage: moekit profile a2a --device cuda [options]\n\n"
	"All-to-all microbenchmark between the GPUs of this node with NCCL (one\n"
	"process, one thread per GPU, ncclCommInitAll; grouped ncclSend/ncclRecv of\n"
	"float32), sweeping the bytes each GPU sends in total, doubling from\n"
	"--min-bytes to --max-bytes.  Per size: the mean time of one call over\n"
	"--iters (after --warmup) from CUDA events, maximum over GPUs; algbw =\n"
	"bytes / time, busbw = algbw x (G - 1) / G, as nccl-tests defines them for\n"
	"alltoall.  The data received is checked.  Across nodes (MPI + NCCL) is not\n"
	"built.\n\n"
	"Options:\n"
	"  --device cuda      required: the NCCL benchmark (without it: MPI, mpirun)\n"
	"  --gpus G           GPUs 0..G-1 (default: all of this node)\n"
	"  --min-bytes SIZE   smallest size (default 1KiB; units as 64KiB, 1MB)\n"
	"  --max-bytes SIZE   largest size (default 64MiB)\n"
	"  --iters N          timed calls per size (default 20)\n"
	"  --warmup N         untimed calls per size (default 5)\n"
	"  --db FILE          store a run of kind profile (label a2a-nccl unless --label)\n"
	"  --label TEXT       label of the stored run\n"
	"  --format FMT       table (default), csv or json\n"
	"  -h, --help         show this help\n"
	"Exit status: 0 success, 1 no CUDA device or an NCCL failure, 2 a usage error.\n";

static enum moe_status a2a_nccl_measure(const struct a2a_opts *o, size_t bytes, double *time_s,
					double *size_B)
{
	return prof_cuda_a2a_run((int)o->peers, bytes, (int)o->warmup, (int)o->iters, time_s, size_B);
}

static const struct a2a_bench a2a_nccl = {
	.usage = a2a_cuda_usage,
	.label = "a2a-nccl",
	.cuda = 1,
	.method = "NCCL grouped send/recv",
	.peers = "GPUs of one node",
	.peer = "GPU",
	.letter = "G",
	.inputs = "\"device\":\"cuda\",",
	.count_key = "gpus",
	.measure = a2a_nccl_measure,
};

static int run_a2a_cuda(int argc, char **argv)
{
	struct a2a_opts o;
	double size_B[A2A_MAX_SIZES], time_s[A2A_MAX_SIZES];
	int rc, count, n;
	enum moe_status st;

	if ((rc = a2a_parse(&a2a_nccl, argc, argv, &o)) >= 0)
		return rc;
	if ((st = prof_cuda_device_count(&count)) != MOE_OK)
		return cli_fail(CMD, st);
	if (o.peers > count)
		return cli_usage(CMD, "--gpus %ld: this node has %d GPU%s", o.peers, count,
				 count == 1 ? "" : "s");
	if (!o.peers)
		o.peers = count;
	st = a2a_sweep(&a2a_nccl, &o, size_B, time_s, &n);
	if (st == MOE_OK)
		st = a2a_report(&a2a_nccl, &o, size_B, time_s, n);
	return st == MOE_OK ? cli_finish_stdout(CMD) : cli_fail(CMD, st);
}
#endif

int cmd_profile(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"model", required_argument, NULL, 'm'},
		{"hidden", required_argument, NULL, 'H'},
		{"ffn", required_argument, NULL, 'F'},
		{"experts", required_argument, NULL, 'E'},
		{"top-k", required_argument, NULL, 'k'},
		{"weights", required_argument, NULL, 'w'},
		{"layer", required_argument, NULL, 'l'},
		{"tokens", required_argument, NULL, 'n'},
		{"threads", required_argument, NULL, 't'},
		{"reps", required_argument, NULL, 'r'},
		{"warmup", required_argument, NULL, 'W'},
		{"seed", required_argument, NULL, 's'},
		{"input", required_argument, NULL, 'i'},
		{"output", required_argument, NULL, 'o'},
		{"capture", required_argument, NULL, 'c'},
		{"no-probe", no_argument, NULL, 'P'},
		{"db", required_argument, NULL, 'd'},
		{"label", required_argument, NULL, 'L'},
		{"format", required_argument, NULL, 'f'},
		{"ep", required_argument, NULL, 'e'},
		{"device", required_argument, NULL, 'D'},
		{"dtype", required_argument, NULL, 'T'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct opts o;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN), ep = 1;
	int c;

	memset(&o, 0, sizeof o);
	o.layer = -1;
	o.threads = ncpu > 0 ? ncpu : 1;
	o.reps = 10;
	o.warmup = 2;
	o.seed = 1;
	o.probe = 1;
	o.fmt = CLI_FORMAT_TABLE;
	if (argc > 1 && strcmp(argv[1], "a2a") == 0 && a2a_wants_cuda(argc - 1, argv + 1)) {
#ifdef HAVE_CUDA
		return run_a2a_cuda(argc - 1, argv + 1);
#else
		fprintf(stderr, "moekit profile: a2a --device cuda: this build has no CUDA (configure --with-cuda)\n");
		return 1;
#endif
	}
	if (argc > 1 && strcmp(argv[1], "a2a") == 0) {
#ifdef HAVE_MPI
		return run_a2a(argc - 1, argv + 1);
#else
		fprintf(stderr, "moekit profile: a2a: this build has no MPI (configure --with-mpi)\n");
		return 1;
#endif
	}
	while ((c = getopt_long(argc, argv, "qh", lopts, NULL)) != -1) {
		switch (c) {
		case 'm': o.model = optarg; break;
		case 'w': o.weights = optarg; break;
		case 'i': o.input = optarg; break;
		case 'o': o.output = optarg; break;
		case 'c': o.capture = optarg; break;
		case 'd': o.db = optarg; break;
		case 'L': o.label = optarg; break;
		case 'P': o.probe = 0; break;
		case 'q': o.quiet = 1; break;
		case 'H': if (!cli_parse_long(CMD, "--hidden", optarg, 1, 1 << 20, &o.hidden)) return 2; break;
		case 'F': if (!cli_parse_long(CMD, "--ffn", optarg, 1, 1 << 22, &o.ffn)) return 2; break;
		case 'E': if (!cli_parse_long(CMD, "--experts", optarg, 1, 65536, &o.experts)) return 2; break;
		case 'k': if (!cli_parse_long(CMD, "--top-k", optarg, 1, 65536, &o.top_k)) return 2; break;
		case 'l': if (!cli_parse_long(CMD, "--layer", optarg, 0, 1 << 20, &o.layer)) return 2; break;
		case 'n': if (!cli_parse_long(CMD, "--tokens", optarg, 1, 1L << 26, &o.tokens)) return 2; break;
		case 't': if (!cli_parse_long(CMD, "--threads", optarg, 1, 1024, &o.threads)) return 2; break;
		case 'r': if (!cli_parse_long(CMD, "--reps", optarg, 1, 1000000, &o.reps)) return 2; break;
		case 'W': if (!cli_parse_long(CMD, "--warmup", optarg, 0, 1000000, &o.warmup)) return 2; break;
		case 's': if (!cli_parse_long(CMD, "--seed", optarg, 0, 0x7fffffffL, &o.seed)) return 2; break;
		case 'e': if (!cli_parse_long(CMD, "--ep", optarg, 1, 1 << 20, &ep)) return 2; break;
		case 'D': if (!parse_device(optarg, &o.cuda, &o.cuda_dev)) return 2; break;
		case 'T':
			if (strcmp(optarg, "bf16") == 0)
				o.fp16 = 0;
			else if (strcmp(optarg, "fp16") == 0)
				o.fp16 = 1;
			else
				return cli_usage(CMD, "--dtype %s: expected bf16 or fp16", optarg);
			break;
		case 'f':
			if (!cli_parse_format(CMD, optarg, &o.fmt))
				return 2;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return cli_finish_stdout(CMD);
		default:
			return cli_bad_option(CMD, argc, argv);
		}
	}
	if (optind < argc)
		return cli_usage(CMD, "unexpected argument '%s'", argv[optind]);
	if (o.cuda) {
		if (ep > 1)
			return cli_usage(CMD, "--ep with --device cuda: the GPU layer runs in one process "
					 "(GPU all-to-all: moekit profile a2a --device cuda)");
#ifdef HAVE_CUDA
		return run_profile_cuda(&o);
#else
		fprintf(stderr, "moekit profile: --device cuda: this build has no CUDA (configure --with-cuda)\n");
		return 1;
#endif
	}
	if (ep > 1) {
#ifdef HAVE_MPI
		return run_ep(&o, ep);
#else
		fprintf(stderr, "moekit profile: --ep %ld: this build has no MPI (configure --with-mpi)\n", ep);
		return 1;
#endif
	}
	return run_profile(&o);
}
