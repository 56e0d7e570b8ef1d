#!/usr/bin/env nextflow
/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    kdgat: CAN-bus intrusion detection with graph neural networks, one campaign over several datasets
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    nextflow run main.nf -profile test                                   # synthetic data, minutes
    nextflow run main.nf -profile slurm,apptainer --datasets set_01,set_02 --seeds 0,1,2 -resume
    Parameters: nextflow.config (defaults) and nextflow_schema.json (descriptions).
    The stages and their dependencies: workflows/kdgat.nf.
*/

include { KDGAT } from './workflows/kdgat'

workflow {
    main:
    // ---- Check and derive the parameters (the only place that reads params) ----------------------
    if (!params.datasets) {
        error("give the datasets to run: --datasets NAME[,NAME...] or --datasets all (see `kdgat datasets`)")
    }
    if (!(params.fusion_method in ['dqn', 'mlp', 'weighted'])) {
        error("--fusion_method must be dqn, mlp or weighted, not '${params.fusion_method}'")
    }
    // the schema's other enums and patterns, checked here (nf-schema is not used): a bad value fails now, not in
    // every training task or in EVALUATE after hours of training
    if (!params.threshold.toString().matches('(margin|f1|youden|fpr:(0(\\.[0-9]+)?|1(\\.0+)?))')) {
        error("--threshold must be margin, f1, youden or fpr:<rate> (a rate in [0, 1]), not '${params.threshold}'")
    }
    // a 0 was falsy, so dropped without a word (the preset's value trained instead)
    ['max_epochs', 'dqn_episodes'].each { name ->
        def value = params[name]
        if (value != null && !(value.toString().isInteger() && value.toString().toInteger() >= 1)) {
            error("--${name} must be a whole number of at least 1, not '${value}'")
        }
    }
    if (params.precision && !(params.precision.toString() in ['64-true', '32-true', '16-mixed', 'bf16-mixed'])) {
        error("--precision must be 64-true, 32-true, 16-mixed or bf16-mixed, not '${params.precision}'")
    }
    if (params.accelerator && !(params.accelerator.toString() in ['auto', 'cpu', 'gpu'])) {
        error("--accelerator must be auto, cpu or gpu, not '${params.accelerator}'")
    }
    // under slurm a training job gets a GPU only through --gres: trainings told to use one would all fail at start
    def profiles = workflow.profile.tokenize(',')
    def wants_gpu = params.accelerator ? params.accelerator.toString() == 'gpu' : profiles.contains('gpu')
    if (profiles.contains('slurm') && !params.slurm_gres && wants_gpu) {
        error("--slurm_gres is empty, so SLURM gives the training jobs no GPU, but ${params.accelerator ? '--accelerator gpu' : 'the gpu profile'} trains on one: set --slurm_gres (e.g. gpu:v100:1)${params.accelerator ? '' : ' or leave out the gpu profile'}")
    }
    // the local executor shares its GPUs out by CUDA_VISIBLE_DEVICES (conf/base.config, process_gpu): without it the
    // trainings do not ask for one (accelerator) and may run on the same GPU at once
    if (profiles.contains('gpu') && !profiles.contains('slurm') && !System.getenv('CUDA_VISIBLE_DEVICES')) {
        log.warn("-profile gpu without slurm: CUDA_VISIBLE_DEVICES is not set, so the trainings may share one GPU at once; export CUDA_VISIBLE_DEVICES=0 (0,1 for two GPUs) to give each training a GPU of its own")
    }
    if (!(params.synth_size.toString() in ['small', 'medium', 'large'])) {
        error("--synth_size must be small, medium or large, not '${params.synth_size}'")
    }
    // move would take the stores and runs that later tasks read out of the work folders (and break -resume)
    if (!(params.publish_dir_mode.toString() in ['copy', 'symlink', 'rellink', 'link', 'copyNoFollow'])) {
        error("--publish_dir_mode must be copy, symlink, rellink, link or copyNoFollow, not '${params.publish_dir_mode}'")
    }
    if (!params.benign_threshold.toString().matches('fpr:(0(\\.[0-9]+)?|1(\\.0+)?)')) {
        error("--benign_threshold must be fpr:<rate>, a rate in [0, 1] (an attack-free dataset's validation windows are all benign), not '${params.benign_threshold}'")
    }
    if (params.containsKey('seed')) {  // not params.seed: reading an undeclared param logs a warning on every run
        error("--seed is now --seeds (a comma list: every training, fusion and evaluation runs once per seed)")
    }
    // each task's own seed comes last on its command line: a seed= in --overrides would be ignored without a word
    if ((params.overrides ?: '').toString().tokenize(' ').any { o -> o.tokenize('.=')[0] == 'seed' }) {
        error("--overrides: seed= has no effect in a campaign, whose tasks each take one of --seeds; give --seeds instead")
    }
    def seeds = params.seeds.toString().tokenize(',').collect { s -> s.trim() }
    if (!seeds || seeds.any { s -> !s.isInteger() || (s as Integer) < 0 }) {
        error("--seeds must be a comma list of whole numbers (e.g. --seeds 0,1,2), not '${params.seeds}'")
    }
    if (workflow.containerEngine && !params.container) {
        error("the ${workflow.containerEngine} profile needs --container (a .sif path or an image URI)")
    }
    // a .sif path (not an image URI such as docker:// or oras://) must exist: else every task fails alike
    if (workflow.containerEngine && !workflow.stubRun && !params.container.toString().contains('://') && !file(params.container.toString()).exists()) {
        error("--container ${params.container}: no such image; build it (apptainer build containers/kdgat.sif containers/kdgat.def) or pass an image URI")
    }
    def outdir = file(params.outdir)
    def lake = params.lake ? file(params.lake) : outdir.resolve('lake')
    def tracking_uri = params.tracking_uri ?: "sqlite:///${outdir}/mlruns.db"
    def catalog = params.catalog ? [file(params.catalog, checkIfExists: true)] : []
    // training checkpoints outlive a task's work folder: a retried training resumes from them
    def checkpoints = outdir.resolve('checkpoints')
    // Tasks write the tracking store, the lake and the checkpoints in place (and Apptainer binds
    // outdir and the lake), so they must exist before the first task starts.
    outdir.mkdirs()
    lake.mkdirs()
    checkpoints.mkdirs()

    KDGAT(
        params.datasets.toString(),
        params.synthetic,
        params.synth_size,
        params.data_root,
        catalog,
        params.fusion_method,
        tracking_uri.toString(),
        lake.toString(),
        seeds.collect { s -> s as Integer }.unique(),
        checkpoints.toString()
    )

    workflow.onComplete = {
        def status = workflow.success ? 'done' : 'failed'
        log.info("kdgat campaign ${status}: results in ${outdir}, report in ${outdir}/report, lake in ${lake}")
    }
}
