/*
 * kdgat ingest: one dataset's raw captures -> canonical frame Parquet (frames/) + manifest.json.
 * The dataset's own root folder is staged as `captures` and linked back to where the catalog
 * expects it under a local data root, so the task depends on that folder only (not on the
 * whole data root) and `source.stamp` (sizes and mtimes of its files) drives -resume.
 */
process KDGAT_INGEST {
    tag "${meta.id}"
    label 'process_medium'

    input:
    tuple val(meta), val(source), path(captures, stageAs: 'captures')
    path(catalog, stageAs: 'extra_catalog/*')  // its own folder: a file named catalog.json, data or frames clashes with none of the task's

    output:
    tuple val(meta), path('frames'), emit: frames

    script:
    def args = task.ext.args ?: ''
    def catalog_arg = catalog ? "--catalog ${catalog}" : ''
    def link = source.root ? "mkdir -p \"\$(dirname 'data/${source.root}')\" && ln -s \"\$PWD/captures\" 'data/${source.root}'" : 'mkdir -p data'
    """
    ${link}
    kdgat ingest \\
        --dataset ${meta.id} \\
        --data-root data \\
        --out frames \\
        --threads ${task.cpus} \\
        ${catalog_arg} \\
        ${args}
    """

    stub:
    """
    mkdir -p frames
    touch frames/manifest.json
    """
}
