/* cli/cmd_net.c: `moekit net`: simulate one collective from a traffic
 * matrix on a modeled cluster (sim/a2a.h on sim/net.h), for what-if
 * questions and for checking the network model against closed forms. */
#include "config.h"
#include "cli/cli.h"
#include "moe/model.h"
#include "moe/units.h"
#include "sim/a2a.h"
#include "sim/net.h"
#include "sim/topo.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"Usage: moekit net --cluster NAME[:NODES]|FILE [OPTIONS] MATRIX\n\n"
	"Simulate one all-to-all given as a traffic matrix on a modeled cluster and\n"
	"print when it completes, when each GPU has received its data, and the\n"
	"bottleneck link.  Flows share links max-min fairly (see docs/sim.md).\n\n"
	"MATRIX is a text file (or - for stdin) of lines `SRC DST BYTES`: GPU ranks\n"
	"numbered node-major (GPU g is local GPU g mod G of node g / G), BYTES a\n"
	"number or a size with a unit (4096, 1.5MB, 2MiB).  '#' starts a comment;\n"
	"blank lines are ignored; repeated pairs add up; SRC = DST moves nothing.\n\n"
	"Options:\n"
	"  --cluster SPEC        a cluster preset, preset:NODES, or an INI file (required)\n"
	"  --algorithm ALGO      direct (default), hierarchical or nvlink-forward\n"
	"  --multipath MODE      spray (default: adaptive routing, spine uplinks as one)\n"
	"                        or ecmp (one uplink per flow by a hash: collisions)\n"
	"  --slow-link NAME=F    divide link NAME's bandwidth by F (repeatable); names\n"
	"                        as printed, e.g. n0.nic3.up, leaf1.down0, n2.g5.nvl.down\n"
	"  --coalesce REL        flows due to end within REL x t of the next end finish\n"
	"                        with it, at the rate-weighted mean of their own ends:\n"
	"                        far fewer events on skewed traffic; a GPU's time moves\n"
	"                        by about REL, the completion much less (default 1e-3;\n"
	"                        0: exact; see docs/sim.md)\n"
	"  --format FMT          table (default), csv or json\n"
	"  --quiet               no progress on stderr\n"
	"  -h, --help            show this help\n\n"
	"Output: table/csv rows gpu, node, finish_s, bytes_sent, bytes_received;\n"
	"json {\"completion_s\", \"gpus\": [...], \"bottleneck\": {\"link\", \"kind\",\n"
	"\"bytes\", \"bw_Bps\", \"utilization\"}, ...}.  The bottleneck is the link with\n"
	"the most bytes per unit of bandwidth; utilization = its bytes / (bandwidth x\n"
	"completion time).\n\n"
	"Exit status: 0 done; 1 a file could not be read; 2 a usage error or a bad\n"
	"matrix (file:line: what is wrong: a GPU outside the cluster, negative or\n"
	"malformed bytes, a missing field).\n\n"
	"Example:\n"
	"  printf '0 8 64MB\\n1 8 64MB\\n' > m.txt\n"
	"  moekit net --cluster dgx-h100:2 m.txt\n";

#define MAX_SLOW 64

/* Reads the matrix into tr; sent/recv per GPU.  Errors name file:line. */
static enum moe_status read_matrix(const char *path, struct sim_traffic *tr, double *sent,
				   double *recv, long *lines)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char buf[4096];
	long ln = 0;
	enum moe_status st = MOE_OK;

	if (f == NULL)
		MOE_FAIL(MOE_EIO, "%s: cannot open: %s", path, strerror(errno));
	*lines = 0;
	while (fgets(buf, sizeof buf, f) != NULL) {
		char *p = buf, *hash, *tok[4], *save = NULL;
		int nt = 0;
		long src, dst;
		char *end;
		double bytes;

		ln++;
		if (strchr(buf, '\n') == NULL && !feof(f)) {
			st = moe_error(MOE_EINVAL, "%s:%ld: line longer than %zu characters", path, ln,
				       sizeof buf - 2);
			break;
		}
		if ((hash = strchr(p, '#')) != NULL)
			*hash = '\0';
		for (char *t = strtok_r(p, " \t\r\n", &save); t != NULL && nt < 4;
		     t = strtok_r(NULL, " \t\r\n", &save))
			tok[nt++] = t;
		if (nt == 0)
			continue;
		if (nt != 3) {
			st = moe_error(MOE_EINVAL, "%s:%ld: expected `SRC DST BYTES`, got %d field%s",
				       path, ln, nt, nt == 1 ? "" : "s");
			break;
		}
		errno = 0;
		src = strtol(tok[0], &end, 10);
		if (*end != '\0' || errno != 0) {
			st = moe_error(MOE_EINVAL, "%s:%ld: source '%s' is not a GPU rank", path, ln, tok[0]);
			break;
		}
		dst = strtol(tok[1], &end, 10);
		if (*end != '\0' || errno != 0) {
			st = moe_error(MOE_EINVAL, "%s:%ld: destination '%s' is not a GPU rank", path, ln,
				       tok[1]);
			break;
		}
		if (src < 0 || src >= tr->gpus || dst < 0 || dst >= tr->gpus) {
			st = moe_error(MOE_EINVAL, "%s:%ld: GPU %ld is outside the cluster's 0..%d", path,
				       ln, src < 0 || src >= tr->gpus ? src : dst, tr->gpus - 1);
			break;
		}
		if (moe_units_parse(tok[2], MOE_UNIT_BYTES, &bytes) != MOE_OK) {
			st = moe_error(MOE_EINVAL, "%s:%ld: bytes '%s': expected a number or a size such as 64MB",
				       path, ln, tok[2]);
			break;
		}
		if (bytes < 0) {
			st = moe_error(MOE_EINVAL, "%s:%ld: bytes %s is negative", path, ln, tok[2]);
			break;
		}
		if (sim_traffic_add(tr, (int)src, (int)dst, bytes) != MOE_OK) {
			st = moe_error(MOE_EINVAL, "%s:%ld: %s", path, ln, moe_errmsg());
			break;
		}
		if (src != dst) {
			sent[src] += bytes;
			recv[dst] += bytes;
		}
		(*lines)++;
	}
	if (st == MOE_OK && ferror(f))
		st = moe_error(MOE_EIO, "%s: read error", path);
	if (f != stdin)
		fclose(f);
	return st;
}

static void fmt_num(char *buf, size_t n, double v)
{
	snprintf(buf, n, "%.9g", v);
}

int cmd_net(int argc, char **argv)
{
	static const struct option opts[] = {
		{"cluster", required_argument, NULL, 'c'},
		{"algorithm", required_argument, NULL, 'a'},
		{"multipath", required_argument, NULL, 'm'},
		{"slow-link", required_argument, NULL, 's'},
		{"format", required_argument, NULL, 'f'},
		{"coalesce", required_argument, NULL, 'Q'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	enum cli_format fmt = CLI_FORMAT_TABLE;
	const char *cluster_spec = NULL, *path;
	const char *slow_name[MAX_SLOW];
	double slow_f[MAX_SLOW];
	int nslow = 0, o, rc = 0;
	enum sim_multipath mp = SIM_MULTIPATH_SPRAY;
	struct sim_a2a_opts ao = {SIM_A2A_DIRECT, 1, 0, 1.0};
	struct moe_cluster c;
	struct sim_topo *topo = NULL;
	struct sim_net *net = NULL;
	struct sim_traffic *tr = NULL;
	struct sim_a2a_result res;
	double *fin = NULL, *sent = NULL, *recv = NULL, t0, wall, coalesce = SIM_NET_COALESCE_DEFAULT;
	long lines = 0;
	enum moe_status st;

	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': cluster_spec = optarg; break;
		case 'a':
			if (!sim_a2a_algo_parse(optarg, &ao.algo))
				return cli_usage("net", "--algorithm: unknown '%s': expected direct, "
						 "hierarchical or nvlink-forward", optarg);
			break;
		case 'm':
			if (strcmp(optarg, "ecmp") == 0)
				mp = SIM_MULTIPATH_ECMP;
			else if (strcmp(optarg, "spray") == 0)
				mp = SIM_MULTIPATH_SPRAY;
			else
				return cli_usage("net", "--multipath: unknown '%s': expected ecmp or spray",
						 optarg);
			break;
		case 's': {
			char *eq = strchr(optarg, '=');
			char *end;
			if (nslow == MAX_SLOW)
				return cli_usage("net", "--slow-link: at most %d", MAX_SLOW);
			if (eq == NULL)
				return cli_usage("net", "--slow-link: '%s': expected NAME=FACTOR", optarg);
			*eq = '\0';
			slow_name[nslow] = optarg;
			slow_f[nslow] = strtod(eq + 1, &end);
			if (*end != '\0' || !(slow_f[nslow] > 0))
				return cli_usage("net", "--slow-link: factor '%s' of %s: expected a positive number",
						 eq + 1, optarg);
			nslow++;
			break;
		}
		case 'f':
			if (!cli_parse_format("net", optarg, &fmt))
				return 2;
			break;
		case 'Q':
			if (!cli_parse_double("net", "--coalesce", optarg, 0, 0.1, &coalesce))
				return 2;
			break;
		case 'q': break;
		case 'h':
			fputs(usage_text, stdout);
			return cli_finish_stdout("net");
		default:
			return cli_bad_option("net", argc, argv);
		}
	}
	if (cluster_spec == NULL)
		return cli_usage("net", "missing --cluster");
	if (optind + 1 != argc)
		return cli_usage("net", optind >= argc ? "missing MATRIX file" : "expected one MATRIX file");
	path = argv[optind];
	if ((st = moe_cluster_load(cluster_spec, &c)) != MOE_OK)
		return cli_fail("net", st);
	if ((st = sim_topo_new(&c, mp, &topo)) != MOE_OK)
		return cli_fail("net", st);
	for (int i = 0; i < nslow; i++) {
		int l = sim_topo_link_find(topo, slow_name[i]);
		if (l < 0) {
			rc = cli_usage("net", "--slow-link: no link '%s' in cluster %s", slow_name[i],
				       cluster_spec);
			goto out;
		}
		sim_topo_slow_link(topo, l, slow_f[i]);
	}
	if ((st = sim_traffic_new(topo->gpus, topo->gpus_per_node, &tr)) != MOE_OK) {
		rc = cli_fail("net", st);
		goto out;
	}
	fin = calloc((size_t)topo->gpus, sizeof *fin);
	sent = calloc((size_t)topo->gpus, sizeof *sent);
	recv = calloc((size_t)topo->gpus, sizeof *recv);
	if (fin == NULL || sent == NULL || recv == NULL) {
		rc = cli_fail("net", moe_error(MOE_ENOMEM, "out of memory"));
		goto out;
	}
	if ((st = read_matrix(path, tr, sent, recv, &lines)) != MOE_OK) {
		rc = cli_fail("net", st);
		goto out;
	}
	if ((st = sim_net_new(topo, 1024, &net)) != MOE_OK) {
		rc = cli_fail("net", st);
		goto out;
	}
	sim_net_set_coalesce(net, coalesce);
	t0 = cli_now_s();
	if ((st = sim_a2a_run(net, topo, tr, &ao, fin, &res)) != MOE_OK) {
		rc = cli_fail("net", st);
		goto out;
	}
	wall = cli_now_s() - t0;
	if (fmt == CLI_FORMAT_JSON) {
		json_t *root = json_object(), *gpus = json_array(), *bn = json_object();
		const struct sim_net_stats *ns = sim_net_stats(net);
		json_object_set_new(root, "cluster", json_string(cluster_spec));
		json_object_set_new(root, "algorithm", json_string(sim_a2a_algo_name(ao.algo)));
		json_object_set_new(root, "multipath", json_string(mp == SIM_MULTIPATH_ECMP ? "ecmp" : "spray"));
		json_object_set_new(root, "coalesce", json_real(coalesce));
		json_object_set_new(root, "completion_s", json_real(res.completion_s));
		json_object_set_new(root, "bytes", json_real(res.bytes));
		json_object_set_new(root, "network_bytes", json_real(res.network_bytes));
		json_object_set_new(root, "intra_bytes", json_real(res.intra_bytes));
		json_object_set_new(root, "flows", json_integer((json_int_t)res.flows));
		json_object_set_new(root, "events", json_integer((json_int_t)ns->events));
		for (int g = 0; g < topo->gpus; g++) {
			json_t *o2 = json_object();
			json_object_set_new(o2, "gpu", json_integer(g));
			json_object_set_new(o2, "node", json_integer(g / topo->gpus_per_node));
			json_object_set_new(o2, "finish_s", json_real(fin[g]));
			json_object_set_new(o2, "bytes_sent", json_real(sent[g]));
			json_object_set_new(o2, "bytes_received", json_real(recv[g]));
			json_array_append_new(gpus, o2);
		}
		json_object_set_new(root, "gpus", gpus);
		if (res.bottleneck_link >= 0) {
			const struct sim_link *L = &topo->links[res.bottleneck_link];
			json_object_set_new(bn, "link", json_string(L->name));
			json_object_set_new(bn, "kind", json_string(sim_link_kind_name(L->kind)));
			json_object_set_new(bn, "bytes", json_real(res.bottleneck_bytes));
			json_object_set_new(bn, "bw_Bps", json_real(L->bw_Bps));
			json_object_set_new(bn, "utilization", json_real(res.bottleneck_util));
			json_object_set_new(root, "bottleneck", bn);
		} else {
			json_decref(bn);
			json_object_set_new(root, "bottleneck", json_null());
		}
		json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
		fputc('\n', stdout);
		json_decref(root);
	} else {
		struct cli_table *t = cli_table_new("gpus");
		char cells[5][48];
		const char *cp[5] = {cells[0], cells[1], cells[2], cells[3], cells[4]};
		char b1[32], b2[32];

		cli_table_note(t, "moekit net: cluster %s (%d nodes x %d GPUs), %s, %s", cluster_spec,
			       topo->nodes, topo->gpus_per_node, sim_a2a_algo_name(ao.algo),
			       mp == SIM_MULTIPATH_ECMP ? "ecmp" : "spray");
		cli_table_note(t, "matrix %s: %ld lines, %s moved (%s between nodes), %llu flows", path,
			       lines, moe_units_format(res.bytes, MOE_UNIT_BYTES, b1, sizeof b1),
			       moe_units_format(res.network_bytes, MOE_UNIT_BYTES, b2, sizeof b2),
			       (unsigned long long)res.flows);
		cli_table_note(t, "completion: %.9g s", res.completion_s);
		if (res.bottleneck_link >= 0)
			cli_table_note(t, "bottleneck: %s (%s), %s at %s, utilization %.1f%%",
				       topo->links[res.bottleneck_link].name,
				       sim_link_kind_name(topo->links[res.bottleneck_link].kind),
				       moe_units_format(res.bottleneck_bytes, MOE_UNIT_BYTES, b1, sizeof b1),
				       moe_units_format(topo->links[res.bottleneck_link].bw_Bps, MOE_UNIT_RATE,
							b2, sizeof b2),
				       100 * res.bottleneck_util);
		cli_table_note(t, "simulated in %.3f s (%llu events%s)", wall,
			       (unsigned long long)sim_net_stats(net)->events,
			       coalesce > 0 ? ", coalesced" : "");
		cli_table_col(t, "gpu", CLI_COL_NUM);
		cli_table_col(t, "node", CLI_COL_NUM);
		cli_table_col(t, "finish_s", CLI_COL_NUM);
		cli_table_col(t, "bytes_sent", CLI_COL_NUM);
		cli_table_col(t, "bytes_received", CLI_COL_NUM);
		for (int g = 0; g < topo->gpus; g++) {
			snprintf(cells[0], sizeof cells[0], "%d", g);
			snprintf(cells[1], sizeof cells[1], "%d", g / topo->gpus_per_node);
			fmt_num(cells[2], sizeof cells[2], fin[g]);
			fmt_num(cells[3], sizeof cells[3], sent[g]);
			fmt_num(cells[4], sizeof cells[4], recv[g]);
			cli_table_row(t, cp);
		}
		cli_table_print(t, fmt, stdout);
		cli_table_free(t);
	}
	rc = cli_finish_stdout("net");
out:
	free(fin);
	free(sent);
	free(recv);
	sim_traffic_free(tr);
	sim_net_free(net);
	sim_topo_free(topo);
	return rc;
}
