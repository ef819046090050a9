rule aggregate:
    """Mean ± std over successful seeds beside the papers' numbers, with a provenance sidecar."""
    input:
        lambda w: [f"{s.path}/eval.json" for s in runs_of(w.experiment, w.scale)],
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
    log:
        "logs/{scale}/aggregate/{experiment}.log",
    conda:
        "../../envs/odeflows.yaml"
    shell:
        "odeflows aggregate --scale {wildcards.scale} --experiment {wildcards.experiment} "
        "--out-dir results/{wildcards.scale}/tables --config-dir {CONFIG_DIR} > {log} 2>&1"


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
    log:
        "logs/{scale}/plot/{experiment}.log",
    conda:
        "../../envs/odeflows.yaml"
    shell:
        "odeflows plot --scale {wildcards.scale} --experiment {wildcards.experiment} "
        "--out-dir {output} --config-dir {CONFIG_DIR} > {log} 2>&1"


rule claims:
    """Verdicts (reproduced / not reproduced / inconclusive) on the SPEC claims this scale tests."""
    input:
        [f"results/{{scale}}/tables/{exp}_runs.csv" for exp in EXPERIMENTS],
    output:
        claims=report("results/{scale}/claims.md", caption="../report/claims.rst",
                      category="Claims"),
        metrics="results/{scale}/metrics.json",
    log:
        "logs/{scale}/claims.log",
    conda:
        "../../envs/odeflows.yaml"
    shell:
        "odeflows claims --scale {wildcards.scale} --tables-dir results/{wildcards.scale}/tables "
        "--out {output.claims} --metrics {output.metrics} > {log} 2>&1"


rule parameters:
    """Parameter counts of the paper configurations beside the papers' printed counts."""
    input:
        [f"{CONFIG_DIR}/experiments/{exp}.yaml" for exp in EXPERIMENTS],
    output:
        csv=report("results/{scale}/tables/parameters.csv", caption="../report/parameters.rst",
                   category="Tables", labels={"experiment": "parameter counts", "format": "csv"}),
        md="results/{scale}/tables/parameters.md",
    log:
        "logs/{scale}/parameters.log",
    conda:
        "../../envs/odeflows.yaml"
    shell:
        "odeflows parameters --out-dir results/{wildcards.scale}/tables "
        "--config-dir {CONFIG_DIR} > {log} 2>&1"
