rule prepare_data:
    """Generate a dataset's fixed train/val/test splits from its seed; the sidecar JSON records
    the content hash."""
    output:
        npz="data/prepared/{scale}/{dataset}.npz",
        meta="data/prepared/{scale}/{dataset}.json",
    params:
        config=data_config_hash,
        code=data_code,
        config_dir=CONFIG_DIR,
        modules=ALL_MODULES,
    log:
        "logs/{scale}/prepare/{dataset}.log",
    # prepared data first: it unblocks the training jobs, the longest of them first
    priority: prepare_priority
    conda:
        "../../envs/odeflows.yaml"
    shell:
        "odeflows prepare --dataset {wildcards.dataset} --scale {wildcards.scale} "
        "--out {output.npz} --config-dir {params.config_dir} {params.modules} > {log} 2>&1"
