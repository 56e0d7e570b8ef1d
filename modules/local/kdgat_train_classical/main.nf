/*
 * kdgat train --model hgb|novelty: a classical yardstick on per-window vectors of the same graph
 * store, of one dataset and seed (hgb: gradient-boosted trees on the labelled windows; novelty:
 * benign-window statistics, read beside the VGAE). CPU only, so it has its own process: no GPU
 * label, no checkpoints (it fits in minutes). meta carries model, variant (the run folder's name)
 * and seed.
 */
process KDGAT_TRAIN_CLASSICAL {
    tag "${meta.id}:seed${meta.seed}:${meta.variant}"
    label 'process_medium'

    input:
    tuple val(meta), path(graphs)
    val tracking_uri

    output:
    tuple val(meta), path("${meta.variant}"), emit: run

    script:
    def args = task.ext.args ?: ''
    def tracking = tracking_uri ? "--tracking-uri '${tracking_uri}'" : ''
    """
    kdgat train \\
        --model ${meta.model} \\
        --graphs ${graphs} \\
        --out ${meta.variant} \\
        --dataset ${meta.id} \\
        --threads ${task.cpus} \\
        ${tracking} \\
        ${args} \\
        -O seed=${meta.seed}
    """

    stub:
    """
    mkdir -p ${meta.variant}
    touch ${meta.variant}/manifest.json
    """
}
