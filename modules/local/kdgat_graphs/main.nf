/*
 * kdgat graphs: frames -> windowed graph store (train/val by time blocks, one part per test scenario).
 */
process KDGAT_GRAPHS {
    tag "${meta.id}"
    label 'process_medium'

    input:
    tuple val(meta), path(frames)

    output:
    tuple val(meta), path('graphs'), emit: graphs

    script:
    def args = task.ext.args ?: ''
    """
    kdgat graphs \\
        --frames ${frames} \\
        --out graphs \\
        --threads ${task.cpus} \\
        ${args}
    """

    stub:
    """
    mkdir -p graphs
    touch graphs/metadata.json
    # the workflow reads parts.train.attack_graphs to route the dataset (a stub trains on attacks) and
    # parts.fusion to check that its fusions can be fitted
    echo '{"summary": {"parts": {"train": {"attack_graphs": 1}, "fusion": {"attack_graphs": 1, "benign_graphs": 1, "attack_share": 0.5}}}}' > graphs/manifest.json
    """
}
