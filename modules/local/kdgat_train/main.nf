/*
 * kdgat train: one model variant of one dataset and seed. Included once per variant
 * (TRAIN_VGAE_LARGE, TRAIN_GAT_SMALL_KD, ...); meta carries model, scale, kd, variant (the run
 * folder's name) and seed. A KD student gets its teacher's run folder (of the same seed); the others
 * get [] (no teacher).
 *
 * Checkpoints go to <checkpoints>/<dataset>/<run key> (durable, outside the work folder; the key is
 * made of dataset, config, graph store and teacher): a task stopped by SIGTERM or SLURM's USR2 keeps
 * its last finished epoch there and exits 143, and the retry, in a new work folder, resumes from it.
 */
process KDGAT_TRAIN {
    tag "${meta.id}:seed${meta.seed}:${meta.variant}"
    label 'process_medium'
    label 'process_gpu'

    input:
    tuple val(meta), path(graphs), path(teacher)
    val tracking_uri
    val checkpoints

    output:
    tuple val(meta), path("${meta.variant}"), emit: run

    script:
    def args = task.ext.args ?: ''
    def kd = meta.kd ? "--aux kd_standard --teacher ${teacher}" : ''
    def seed = "-O seed=${meta.seed}"  // last on the command line: a later -O wins, so no --overrides seed= undoes the fan-out
    def tracking = tracking_uri ? "--tracking-uri '${tracking_uri}'" : ''
    """
    kdgat train \\
        --model ${meta.model} \\
        --scale ${meta.scale} \\
        ${kd} \\
        --graphs ${graphs} \\
        --out ${meta.variant} \\
        --dataset ${meta.id} \\
        --checkpoint-dir '${checkpoints}/${meta.id}' \\
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
