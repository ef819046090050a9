rule tables:
    """Mean ± std over successful seeds beside the papers' numbers, with a provenance sidecar."""
    input:
        lambda w: [f"{s.path}/eval.json" for s in runs_of(w.experiment)],
    output:
        csv=report(
            "results/{scale}/tables/{experiment}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"experiment": "{experiment}", "format": "csv"},
        ),
        md="results/{scale}/tables/{experiment}.md",
        runs="results/{scale}/tables/{experiment}_runs.csv",
        provenance="results/{scale}/tables/{experiment}.provenance.json",
        curves="results/{scale}/tables/{experiment}_curves.csv",
    params:
        code=lambda w: code("tables", extra=task_modules(w.experiment)),
        out_dir=lambda w, output: os.path.dirname(output.csv),
        config_dir=CONFIG_DIR,
        modules=WORKFLOW_MODULES,
    log:
        "logs/{scale}/tables/{experiment}.log",
    conda:
        "../../envs/odeflows.yaml"
    shell:
        "odeflows tables --scale {wildcards.scale} --experiment {wildcards.experiment} "
        "--out-dir {params.out_dir} --config-dir {params.config_dir} {params.modules} > {log} 2>&1"


rule plot:
    """Figures of one experiment (PNG and PDF), read from run directories and tables only."""
    input:
        table="results/{scale}/tables/{experiment}.csv",
    output:
        report(
            directory("results/{scale}/figures/{experiment}"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
    params:
        code=lambda w: code("plot", extra=task_modules(w.experiment)),
        config_dir=CONFIG_DIR,
        modules=WORKFLOW_MODULES,
    log:
        "logs/{scale}/plot/{experiment}.log",
    conda:
        "../../envs/odeflows.yaml"
    shell:
        "odeflows plot --scale {wildcards.scale} --experiment {wildcards.experiment} "
        "--out-dir {output} --config-dir {params.config_dir} {params.modules} > {log} 2>&1"


rule claims:
    """Verdicts (reproduced / not reproduced / inconclusive) on the papers' claims this scale
    tests."""
    input:
        runs=[f"results/{{scale}}/tables/{exp}_runs.csv" for exp in EXPERIMENTS],
        provenance=[f"results/{{scale}}/tables/{exp}.provenance.json" for exp in EXPERIMENTS],
    output:
        claims=report("results/{scale}/claims.md", caption="../report/claims.rst",
                      category="Claims"),
        verdicts="results/{scale}/claims.json",
        metrics=directory(METRICS_DIR),
        report=report(directory("results/{scale}/report"), patterns=["{name}.html"],
                      caption="../report/claim.rst", category="Claims"),
    params:
        code=code("claims"),
        tables_dir=lambda w, input: os.path.dirname(input.runs[0]),
        config_dir=CONFIG_DIR,
        modules=ALL_MODULES,
    log:
        "logs/{scale}/claims.log",
    conda:
        "../../envs/odeflows.yaml"
    shell:
        "odeflows claims --scale {wildcards.scale} --tables-dir {params.tables_dir} "
        "--out {output.claims} --metrics {output.metrics} --report-dir {output.report} "
        "--config-dir {params.config_dir} {params.modules} > {log} 2>&1"


rule parameter_counts:
    """Parameter counts of the paper configurations beside the papers' printed counts."""
    input:
        [f"{CONFIG_DIR}/experiments/{exp}.yaml" for exp in EXPERIMENTS],
    output:
        csv=report("results/{scale}/tables/parameters.csv", caption="../report/parameters.rst",
                   category="Tables", labels={"experiment": "parameter counts", "format": "csv"}),
        md="results/{scale}/tables/parameters.md",
    params:
        code=code("parameter_counts"),
        out_dir=lambda w, output: os.path.dirname(output.csv),
        config_dir=lambda w, input: os.path.dirname(os.path.dirname(input[0])),
        experiments=" ".join(EXPERIMENTS),
    log:
        "logs/{scale}/parameter_counts.log",
    conda:
        "../../envs/odeflows.yaml"
    shell:
        "odeflows parameter-counts --out-dir {params.out_dir} --experiments {params.experiments} "
        "--config-dir {params.config_dir} > {log} 2>&1"
