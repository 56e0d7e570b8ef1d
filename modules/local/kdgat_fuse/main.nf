/*
 * kdgat fuse: fusion of a frozen VGAE and GAT of one scale and seed (FUSE_LARGE, FUSE_SMALL_KD).
 */
process KDGAT_FUSE {
    tag "${meta.id}:seed${meta.seed}:${meta.variant}"
    label 'process_medium'

    input:
    tuple val(meta), path(graphs), path(vgae), path(gat)
    val method
    val tracking_uri

    output:
    tuple val(meta), path("${meta.variant}"), emit: run

    script:
    def args = task.ext.args ?: ''
    def seed = "-O seed=${meta.seed}"  // last on the command line: a later -O wins, so no --overrides seed= undoes the fan-out
    def tracking = tracking_uri ? "--tracking-uri '${tracking_uri}'" : ''
    """
    kdgat fuse \\
        --method ${method} \\
        --vgae ${vgae} \\
        --gat ${gat} \\
        --graphs ${graphs} \\
        --out ${meta.variant} \\
        --scale ${meta.scale} \\
        --dataset ${meta.id} \\
        --threads ${task.cpus} \\
        ${tracking} \\
        ${args} \\
        ${seed}
    """

    stub:
    """
    mkdir -p ${meta.variant}
    touch ${meta.variant}/manifest.json
    """
}
