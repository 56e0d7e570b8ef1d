/*
 * kdgat export: the in-vehicle detector of one dataset and seed, a self-describing bundle for
 * `kdgat detect` (the distilled student ensemble as the default detector and its GAT, with the
 * thresholds EVALUATE chose on validation). The runs are staged under runs/ with their variant
 * names, in the order of the call: the first is the default detector.
 */
process KDGAT_EXPORT {
    tag "${meta.id}:seed${meta.seed}"
    label 'process_low'

    input:
    tuple val(meta), path(graphs), path(runs, stageAs: 'runs/*'), path(evaluation)

    output:
    tuple val(meta), path('detector'), emit: detector

    script:
    def args = task.ext.args ?: ''
    def run_args = [runs].flatten().collect { run -> "--run ${run}" }.join(' ')
    """
    kdgat export \\
        ${run_args} \\
        --eval ${evaluation} \\
        --graphs ${graphs} \\
        --out detector \\
        --threads ${task.cpus} \\
        ${args}
    """

    stub:
    """
    mkdir -p detector
    touch detector/manifest.json
    """
}
