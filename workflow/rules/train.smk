rule train:
    """Train one (experiment, dataset, model, seed) run; resumes from <run>/checkpoint.pt after an
    interruption. A diverged run ends with status "failed" in summary.json (a failed seed), not
    with a workflow error. Reruns when its resolved config or the code it runs changes."""
    input:
        data="data/prepared/{scale}/{dataset}.npz",
    output:
        summary=f"{RUN_DIR}/summary.json",
    params:
        config=run_config_hash,
        code=train_code,
        run_dir=lambda w, output: os.path.dirname(output.summary),
        launch=train_launcher,
        config_dir=CONFIG_DIR,
        modules=WORKFLOW_MODULES,
    log:
        "logs/{scale}/train/{experiment}/{dataset}/{model}/seed{seed}.log",
    benchmark:
        "logs/{scale}/benchmarks/train/{experiment}/{dataset}/{model}/seed{seed}.tsv"
    threads: 1
    # longest runs first: a run's declared runtime (minutes) is its priority, so a long run does
    # not start last and leave cores idle at the end (longest-processing-time-first scheduling)
    priority: train_runtime
    resources:
        runtime=train_runtime,
        mem_mb=lambda w: scale_resources(w, "mem_mb", 2000),
        gpu=lambda w: scale_resources(w, "gpu", 0),
    conda:
        "../../envs/odeflows.yaml"
    shell:
        "{params.launch}odeflows train --scale {wildcards.scale} --experiment {wildcards.experiment} "
        "--dataset {wildcards.dataset} --model {wildcards.model} --seed {wildcards.seed} "
        "--config-dir {params.config_dir} --data {input.data} --out {params.run_dir} "
        "{params.modules} > {log} 2>&1"


rule evaluate:
    """Score a finished run on the test split (best-validation weights, the papers' protocol).
    Reruns when the evaluation code changes, without retraining."""
    input:
        summary=f"{RUN_DIR}/summary.json",
        data="data/prepared/{scale}/{dataset}.npz",
    output:
        f"{RUN_DIR}/eval.json",
    params:
        code=evaluate_code,
        run_dir=lambda w, input: os.path.dirname(input.summary),
    log:
        "logs/{scale}/evaluate/{experiment}/{dataset}/{model}/seed{seed}.log",
    benchmark:
        "logs/{scale}/benchmarks/evaluate/{experiment}/{dataset}/{model}/seed{seed}.tsv"
    threads: 1
    conda:
        "../../envs/odeflows.yaml"
    shell:
        "odeflows evaluate --run {params.run_dir} --data {input.data} > {log} 2>&1"
