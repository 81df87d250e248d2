# presets/: model and cluster presets, installed under $(pkgdatadir)/presets.
MODEL_PRESETS = \
	presets/models/deepseek-v3.ini presets/models/gpt-oss-120b.ini \
	presets/models/mixtral-8x22b.ini presets/models/mixtral-8x7b.ini \
	presets/models/olmoe-1b-7b.ini presets/models/qwen3-235b-a22b.ini \
	presets/models/switch-base-128.ini
CLUSTER_PRESETS = \
	presets/clusters/dgx-a100.ini presets/clusters/dgx-h100.ini \
	presets/clusters/gb200-nvl72.ini presets/clusters/hgx-h800.ini \
	presets/clusters/mixed-h100-a100.ini presets/clusters/pcie-l40s.ini
nobase_dist_pkgdata_DATA += $(MODEL_PRESETS) $(CLUSTER_PRESETS)
