/*
 * kdgat evaluate: every run of one dataset and seed on validation and each test scenario
 * (thresholds chosen on validation). The runs are staged under runs/ with their variant names.
 */
process KDGAT_EVALUATE {
    tag "${meta.id}:seed${meta.seed}"
    label 'process_medium'

    input:
    tuple val(meta), path(graphs), path(runs, stageAs: 'runs/*')
    val tracking_uri

    output:
    tuple val(meta), path('eval'), emit: eval

    script:
    def args = task.ext.args ?: ''
    def run_args = [runs].flatten().collect { run -> "--runs ${run}" }.join(' ')
    def tracking = tracking_uri ? "--tracking-uri '${tracking_uri}'" : ''
    """
    kdgat evaluate \\
        ${run_args} \\
        --graphs ${graphs} \\
        --out eval \\
        --dataset ${meta.id} \\
        --threads ${task.cpus} \\
        ${tracking} \\
        ${args}
    """

    stub:
    """
    mkdir -p eval
    touch eval/metrics.json
    """
}
