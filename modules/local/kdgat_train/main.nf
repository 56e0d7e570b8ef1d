/*
 * kdgat train: one model variant of one dataset. Included once per variant (TRAIN_VGAE_LARGE,
 * TRAIN_GAT_SMALL_KD, ...); meta carries model, scale, kd and variant (the run folder's name).
 * A KD student gets its teacher's run folder; the others get [] (no teacher).
 */
process KDGAT_TRAIN {
    tag "${meta.id}:${meta.variant}"
    label 'process_medium'
    label 'process_gpu'

    input:
    tuple val(meta), path(graphs), path(teacher)
    val tracking_uri

    output:
    tuple val(meta), path("${meta.variant}"), emit: run

    script:
    def args = task.ext.args ?: ''
    def kd = meta.kd ? "--aux kd_standard --teacher ${teacher}" : ''
    def tracking = tracking_uri ? "--tracking-uri '${tracking_uri}'" : ''
    """
    kdgat train \\
        --model ${meta.model} \\
        --scale ${meta.scale} \\
        ${kd} \\
        --graphs ${graphs} \\
        --out ${meta.variant} \\
        --dataset ${meta.id} \\
        --no-resume \\
        ${tracking} \\
        ${args}
    """

    stub:
    """
    mkdir -p ${meta.variant}
    touch ${meta.variant}/manifest.json
    """
}
