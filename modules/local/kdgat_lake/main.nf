/*
 * kdgat lake: append every run and evaluation of every dataset to the Parquet datalake, then
 * rebuild the DuckDB views. The lake lives outside the work folder (it accumulates across
 * campaigns), so the task's output is a receipt of what it appended; one task, so one writer.
 */
process KDGAT_LAKE {
    tag "lake"
    label 'process_low'

    input:
    path(runs, stageAs: 'runs/?/*')
    val lake
    val lake_stamp // 'filled' or 'empty' when the run started: a lake deleted since appends everything again

    output:
    path 'lake_append.txt', emit: receipt

    script:
    def args = task.ext.args ?: ''
    def run_args = [runs].flatten().collect { run -> "--runs ${run}" }.join(' ')
    """
    # the lake was ${lake_stamp} when the run started
    kdgat lake append \\
        ${run_args} \\
        --lake '${lake}' \\
        --threads ${task.cpus} \\
        ${args} | tee lake_append.txt
    kdgat lake build --lake '${lake}' --threads ${task.cpus} | tee -a lake_append.txt
    """

    stub:
    """
    touch lake_append.txt
    """
}
