/*
 * kdgat datasets: resolve --datasets (a comma list or `all`) against the catalog and the data root.
 * Writes datasets.tsv (name, root relative to the data root, real path of that root, one_trace); the workflow
 * fans out one channel item per row. `stamp` is a fingerprint of the data root's files, so that
 * `-resume` re-resolves `all` when captures appear or disappear.
 */
process KDGAT_DATASETS {
    tag "${spec}"
    label 'process_single'

    input:
    val spec
    tuple path(data_root, stageAs: 'data'), val(stamp)
    path(catalog, stageAs: 'extra_catalog/*')  // its own folder: a file named catalog.json, data or frames clashes with none of the task's

    output:
    path 'datasets.tsv', emit: tsv

    script:
    def args = task.ext.args ?: ''
    def catalog_arg = catalog ? "--catalog ${catalog}" : ''
    """
    # data root fingerprint: ${stamp}
    kdgat datasets --format json --data-root data ${catalog_arg} ${args} > catalog.json
    kdgat_resolve_datasets.py --datasets '${spec}' --data-root data catalog.json > datasets.tsv
    """

    stub:
    def names = spec == 'all' ? ['synthetic'] : spec.tokenize(',').collect { name -> name.trim() }
    """
    printf 'name\\troot\\tpath\\tone_trace\\n' > datasets.tsv
    for name in ${names.join(' ')}; do
        printf '%s\\t%s\\t%s\\tfalse\\n' "\$name" "\$name" "\$(cd data && pwd -P)/\$name" >> datasets.tsv
    done
    """
}
