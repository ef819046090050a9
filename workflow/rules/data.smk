rule prepare_data:
    """Generate a dataset's fixed train/val/test splits from its seed; the sidecar JSON records
    the content hash."""
    output:
        npz="data/prepared/{scale}/{dataset}.npz",
        meta="data/prepared/{scale}/{dataset}.json",
    params:
        cfg_hash=data_config_hash,
    log:
        "logs/{scale}/prepare/{dataset}.log",
    conda:
        "../../envs/odeflows.yaml"
    shell:
        "odeflows prepare --dataset {wildcards.dataset} --scale {wildcards.scale} "
        "--out {output.npz} --config-dir {CONFIG_DIR} > {log} 2>&1"
