# odeflows: dataset preparation -> repeated-seed training -> evaluation -> tables, figures, claims.
#   snakemake --cores all                       # default (laptop) scale
#   snakemake --cores 2 --config scale=smoke    # CI-sized
#   snakemake -n --config scale=paper           # the papers' job matrix (GPU clusters)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


# the report opens on the claims table once the claims exist (a generic page before)
report: front_page()

include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/results.smk"


onsuccess:
    export_snakemake_metadata()


rule all:
    default_target: True
    input:
        final_outputs(),
