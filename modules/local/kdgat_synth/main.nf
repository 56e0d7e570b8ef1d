/*
 * kdgat synth: the synthetic captures (can-train-and-test layout) that the `synthetic` catalog
 * entry expects under <data root>/synthetic. Used only with --synthetic (the test profile).
 */
process KDGAT_SYNTH {
    tag "synthetic:${size}"
    label 'process_single'

    input:
    val seed
    val size

    output:
    path 'data', emit: data_root

    script:
    def args = task.ext.args ?: ''
    """
    kdgat synth --out data/synthetic --seed ${seed} --size ${size} --threads ${task.cpus} ${args}
    """

    stub:
    """
    mkdir -p data/synthetic
    """
}
