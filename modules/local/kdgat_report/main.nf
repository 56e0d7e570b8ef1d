/*
 * kdgat report: the HTML report over the datalake (after LAKE has appended this campaign).
 */
process KDGAT_REPORT {
    tag "report"
    label 'process_single'

    input:
    path receipt
    val lake

    output:
    path 'report', emit: report

    script:
    def args = task.ext.args ?: ''
    """
    test -f ${receipt}  # LAKE has appended this campaign
    kdgat report \\
        --lake '${lake}' \\
        --out report \\
        --threads ${task.cpus} \\
        ${args}
    """

    stub:
    """
    mkdir -p report
    touch report/index.html
    """
}
