/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    KDGAT: one campaign over several datasets
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    Per dataset: INGEST -> GRAPHS; then per dataset and seed: six TRAIN_* GNNs, TRAIN_HGB_LARGE and
    TRAIN_NOVELTY_LARGE (the classical yardsticks) -> FUSE_LARGE, FUSE_SMALL_KD -> EVALUATE -> EXPORT (the student
    detector bundle); then one LAKE task over every dataset and seed, then REPORT. These
    are the steps and dependencies of kdgat.pipeline.plan_steps() (`kdgat pipeline`);
    tests/test_nextflow_static.py compares the two.

    Every channel item starts with meta ([id: dataset], then seed and key "<dataset>/seed<k>" once
    the graph store is fanned out over the seeds, plus, for a run, its variant); a stage that needs
    the outputs of two others joins them on meta.key, so each dataset and seed progresses on its own.
    A step added after GRAPHS reads ch_graphs (already one item per seed) and joins on meta.key: it
    runs per seed with nothing else to change. DATASETS (resolve --datasets against the catalog) and
    SYNTH (the synthetic captures of the test profile) only provide the inputs of INGEST and are not
    stages of the plan.

    A dataset whose graph store holds no attack window in its training part (attack-free captures,
    as of a user's own vehicle; meta.benign) skips the steps that learn from attacks (the GATs,
    TRAIN_HGB_LARGE, the fusions: they read ch_graphs_supervised); EVALUATE scores its VGAEs and the
    novelty yardstick at --benign_threshold, and EXPORT packs its student VGAE. Step.supervised and
    Step.benign_members of the plan say the same.
*/

include { KDGAT_SYNTH as SYNTH } from '../modules/local/kdgat_synth/main'
include { KDGAT_DATASETS as DATASETS } from '../modules/local/kdgat_datasets/main'
include { KDGAT_INGEST as INGEST } from '../modules/local/kdgat_ingest/main'
include { KDGAT_GRAPHS as GRAPHS } from '../modules/local/kdgat_graphs/main'
include { KDGAT_TRAIN as TRAIN_VGAE_LARGE } from '../modules/local/kdgat_train/main'
include { KDGAT_TRAIN as TRAIN_GAT_LARGE } from '../modules/local/kdgat_train/main'
include { KDGAT_TRAIN as TRAIN_VGAE_SMALL_KD } from '../modules/local/kdgat_train/main'
include { KDGAT_TRAIN as TRAIN_GAT_SMALL_KD } from '../modules/local/kdgat_train/main'
include { KDGAT_TRAIN as TRAIN_VGAE_SMALL } from '../modules/local/kdgat_train/main'
include { KDGAT_TRAIN as TRAIN_GAT_SMALL } from '../modules/local/kdgat_train/main'
include { KDGAT_TRAIN_CLASSICAL as TRAIN_HGB_LARGE } from '../modules/local/kdgat_train_classical/main'
include { KDGAT_TRAIN_CLASSICAL as TRAIN_NOVELTY_LARGE } from '../modules/local/kdgat_train_classical/main'
include { KDGAT_FUSE as FUSE_LARGE } from '../modules/local/kdgat_fuse/main'
include { KDGAT_FUSE as FUSE_SMALL_KD } from '../modules/local/kdgat_fuse/main'
include { KDGAT_EVALUATE as EVALUATE } from '../modules/local/kdgat_evaluate/main'
include { KDGAT_EXPORT as EXPORT } from '../modules/local/kdgat_export/main'
include { KDGAT_LAKE as LAKE } from '../modules/local/kdgat_lake/main'
include { KDGAT_REPORT as REPORT } from '../modules/local/kdgat_report/main'

/*
 * meta of one training run: the dataset's meta plus model, scale, KD flag and the run folder's
 * name (vgae_large, gat_small_kd, ...: the run names of `kdgat pipeline`).
 */
def trainMeta(meta, model, scale, kd) {
    return meta + [variant: "${model}_${scale}${kd ? '_kd' : ''}".toString(), model: model, scale: scale, kd: kd]
}

/*
 * A fingerprint of every file under a folder (path, size, mtime: Nextflow's own cache rule, file
 * by file). A staged folder is hashed by its own metadata only, so without this `-resume` would
 * not notice a capture added or replaced in a sub-folder.
 */
def captureStamp(dir) {
    if (!dir.exists()) {
        return ''
    }
    def entries = files("${dir}/**", type: 'file').collect { f -> "${f}\t${f.size()}\t${f.lastModified()}" }
    return entries.toSorted().join('\n').md5()
}

/*
 * Whether the lake was filled when this run started. The lake lives outside the work folder, so a
 * lake deleted (or moved) since the last run is invisible to -resume's cache: this value in LAKE's
 * key makes it append everything again then (and once after the first run filled it).
 */
def lakeStamp(lake) {
    return file("${lake}/lake.json").exists() ? 'filled' : 'empty'
}

/*
 * Whether a graph store holds attack windows in its training part (its manifest's
 * parts.train.attack_graphs; kdgat.pipeline.plan.trains_on_attacks reads the same field).
 */
def trainsOnAttacks(graphs) {
    def manifest = new groovy.json.JsonSlurper().parseText(graphs.resolve('manifest.json').text)
    return (manifest.summary.parts.train.attack_graphs as Integer) > 0
}

/*
 * Why a graph store that trains on attacks cannot have its fusions fitted (its 'fusion' part lacks attack
 * or benign windows), or null; kdgat.pipeline.plan.fusion_part_problem reads the same fields. FUSE would
 * fail only once every member had trained.
 */
def fusionPartProblem(graphs) {
    def parts = new groovy.json.JsonSlurper().parseText(graphs.resolve('manifest.json').text).summary.parts
    if ((parts.train.attack_graphs as Integer) == 0) {
        return null // no fusion is planned there
    }
    def fusion = parts.fusion
    if (fusion == null) {
        return "no 'fusion' part (a store of an older kdgat); rebuild it with `kdgat graphs`"
    }
    if (fusion.containsKey('graphs') && (fusion.graphs as Integer) == 0) {
        return "its 'fusion' part holds no window, so the fusions cannot be fitted: it gets half (rounded down) of the round(val_blocks x val_fraction) held-out time blocks of each training file, and only the windows that fit inside one; raise preprocessing.val_blocks or val_fraction until that product is 2 or more, or lower preprocessing.window where a block is shorter than a window"
    }
    // benign_graphs since kdgat wrote it; before, attack_share (rounded to 4 digits: 1.0 can hide a few; none
    // recorded: unknown, and FUSE says so on the windows)
    def benign = fusion.containsKey('benign_graphs') ? (fusion.benign_graphs as Integer) > 0 : fusion.attack_share == null || (fusion.attack_share as Double) < 1.0
    if ((fusion.attack_graphs as Integer) == 0 || !benign) {
        return "its 'fusion' part (held-out blocks of the training captures) lacks attack or benign windows, so the fusions cannot be fitted; raise preprocessing.val_blocks or val_fraction"
    }
    return null
}

workflow KDGAT {
    take:
    datasets // string: comma list of catalog datasets, or 'all'
    synthetic // boolean: generate the synthetic captures (kdgat synth) and use them as the data root
    synth_size // string: small | medium | large
    data_root // string: folder the catalog's roots are relative to (not used with synthetic)
    catalog // list: [] or [an extra catalog YAML]
    fusion_method // string: dqn | mlp | weighted
    tracking_uri // string: the MLflow store every task logs to
    lake // string: absolute path of the Parquet datalake
    seeds // list of integers: every training, fusion and evaluation runs once per seed
    checkpoints // string: absolute path of the durable training checkpoints (<outdir>/checkpoints)

    main:
    // ---- Inputs: the data root and the datasets to run ------------------------------------------
    // (queue channels, so that DATASETS' output is one too and splitCsv fans it out)
    ch_data_root = channel.empty()
    if (synthetic) {
        SYNTH(channel.of(0), synth_size)
        ch_data_root = SYNTH.out.data_root
    }
    else {
        // its real path: Apptainer binds the folder an input lies in, not where a link to it points
        ch_data_root = channel.of(file(data_root, checkIfExists: true).toRealPath())
    }
    DATASETS(datasets, ch_data_root.map { root -> [root, captureStamp(root)] }, catalog)

    // One item per dataset: [meta, source (root relative to the data root, fingerprint), root folder]
    ch_sources = DATASETS.out.tsv
        .splitCsv(header: true, sep: '\t')
        .map { row ->
            def dir = file(row.path)
            // one_trace only where true: the ingest key of every other dataset stays what it was
            def trace = row.one_trace == 'true' ? [one_trace: true] : [:]
            return [[id: row.name], [root: row.root ?: '', stamp: captureStamp(dir)] + trace, dir]
        }

    // ---- Per dataset: captures -> frames -> graph store -----------------------------------------
    INGEST(ch_sources, catalog)
    GRAPHS(INGEST.out.frames)

    // ---- The seed fan-out: one item per dataset and seed from here on, keyed by meta.key ---------
    // a store whose fusions could not be fitted stops the run here, before any training task
    ch_graphs = GRAPHS.out.graphs
        .map { meta, graphs ->
            def problem = fusionPartProblem(graphs)
            if (problem) {
                error("${meta.id}: graph store ${graphs}: ${problem}")
            }
            [meta, graphs]
        }
        .combine(channel.fromList(seeds))
        .map { meta, graphs, seed -> [meta + [seed: seed, key: "${meta.id}/seed${seed}".toString()], graphs] }
    ch_graphs_by_key = ch_graphs.map { meta, graphs -> [meta.key, meta, graphs] }
    // the steps that learn from attack windows run where the training part holds some; the datasets
    // that train on none are marked (meta.benign) for EVALUATE's threshold, the others' meta is unchanged
    ch_graphs_supervised = ch_graphs.filter { _meta, graphs -> trainsOnAttacks(graphs) }
    ch_graphs_supervised_by_key = ch_graphs_supervised.map { meta, graphs -> [meta.key, meta, graphs] }
    ch_graphs_benign_by_key = ch_graphs
        .filter { _meta, graphs -> !trainsOnAttacks(graphs) }
        .map { meta, graphs -> [meta.key, meta + [benign: true], graphs] }

    // ---- Teachers and the no-KD students: graphs only -------------------------------------------
    TRAIN_VGAE_LARGE(ch_graphs.map { meta, graphs -> [trainMeta(meta, 'vgae', 'large', false), graphs, []] }, tracking_uri, checkpoints)
    TRAIN_GAT_LARGE(ch_graphs_supervised.map { meta, graphs -> [trainMeta(meta, 'gat', 'large', false), graphs, []] }, tracking_uri, checkpoints)
    TRAIN_VGAE_SMALL(ch_graphs.map { meta, graphs -> [trainMeta(meta, 'vgae', 'small', false), graphs, []] }, tracking_uri, checkpoints)
    TRAIN_GAT_SMALL(ch_graphs_supervised.map { meta, graphs -> [trainMeta(meta, 'gat', 'small', false), graphs, []] }, tracking_uri, checkpoints)

    ch_vgae_large = TRAIN_VGAE_LARGE.out.run.map { meta, run -> [meta.key, run] }
    ch_gat_large = TRAIN_GAT_LARGE.out.run.map { meta, run -> [meta.key, run] }
    ch_vgae_small = TRAIN_VGAE_SMALL.out.run.map { meta, run -> [meta.key, run] }
    ch_gat_small = TRAIN_GAT_SMALL.out.run.map { meta, run -> [meta.key, run] }

    // ---- KD students: the graphs joined with the large run of the same model, dataset and seed ---
    TRAIN_VGAE_SMALL_KD(
        ch_graphs_by_key
            .join(ch_vgae_large)
            .map { _key, meta, graphs, teacher -> [trainMeta(meta, 'vgae', 'small', true), graphs, teacher] },
        tracking_uri,
        checkpoints
    )
    TRAIN_GAT_SMALL_KD(
        ch_graphs_supervised_by_key
            .join(ch_gat_large)
            .map { _key, meta, graphs, teacher -> [trainMeta(meta, 'gat', 'small', true), graphs, teacher] },
        tracking_uri,
        checkpoints
    )
    ch_vgae_small_kd = TRAIN_VGAE_SMALL_KD.out.run.map { meta, run -> [meta.key, run] }
    ch_gat_small_kd = TRAIN_GAT_SMALL_KD.out.run.map { meta, run -> [meta.key, run] }

    // ---- The classical yardsticks (supervised; benign-only beside the VGAE): graphs only, on CPU --
    TRAIN_HGB_LARGE(ch_graphs_supervised.map { meta, graphs -> [trainMeta(meta, 'hgb', 'large', false), graphs] }, tracking_uri)
    ch_hgb_large = TRAIN_HGB_LARGE.out.run.map { meta, run -> [meta.key, run] }
    TRAIN_NOVELTY_LARGE(
        ch_graphs.map { meta, graphs -> [trainMeta(meta, 'novelty', 'large', false), graphs] },
        tracking_uri
    )
    ch_novelty_large = TRAIN_NOVELTY_LARGE.out.run.map { meta, run -> [meta.key, run] }

    // ---- Fusion of the VGAE and GAT of one scale -------------------------------------------------
    FUSE_LARGE(
        ch_graphs_supervised_by_key
            .join(ch_vgae_large)
            .join(ch_gat_large)
            .map { _key, meta, graphs, vgae, gat -> [meta + [variant: 'fuse_large', scale: 'large'], graphs, vgae, gat] },
        fusion_method,
        tracking_uri
    )
    FUSE_SMALL_KD(
        ch_graphs_supervised_by_key
            .join(ch_vgae_small_kd)
            .join(ch_gat_small_kd)
            .map { _key, meta, graphs, vgae, gat -> [meta + [variant: 'fuse_small_kd', scale: 'small'], graphs, vgae, gat] },
        fusion_method,
        tracking_uri
    )
    ch_fuse_large = FUSE_LARGE.out.run.map { meta, run -> [meta.key, run] }
    ch_fuse_small_kd = FUSE_SMALL_KD.out.run.map { meta, run -> [meta.key, run] }

    // ---- Evaluate every run of a dataset and seed (fixed order: the same command line on -resume) -
    ch_evaluate_supervised = ch_graphs_supervised_by_key
        .join(ch_vgae_large)
        .join(ch_gat_large)
        .join(ch_vgae_small_kd)
        .join(ch_gat_small_kd)
        .join(ch_vgae_small)
        .join(ch_gat_small)
        .join(ch_hgb_large)
        .join(ch_novelty_large)
        .join(ch_fuse_large)
        .join(ch_fuse_small_kd)
        .map { _key, meta, graphs, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10 ->
            [meta, graphs, [r1, r2, r3, r4, r5, r6, r7, r8, r9, r10]]
        }
    ch_evaluate_benign = ch_graphs_benign_by_key
        .join(ch_vgae_large)
        .join(ch_vgae_small_kd)
        .join(ch_vgae_small)
        .join(ch_novelty_large)
        .map { _key, meta, graphs, r1, r2, r3, r4 -> [meta, graphs, [r1, r2, r3, r4]] }
    EVALUATE(ch_evaluate_supervised.mix(ch_evaluate_benign), tracking_uri)

    // ---- The in-vehicle detector: the student ensemble (default) and its GAT, EVALUATE's thresholds --
    // (the student VGAE where training is attack-free)
    ch_evaluation = EVALUATE.out.eval.map { meta, dir -> [meta.key, dir] }
    ch_export_supervised = ch_graphs_supervised_by_key
        .join(ch_fuse_small_kd)
        .join(ch_gat_small_kd)
        .join(ch_evaluation)
        .map { _key, meta, graphs, fusion, gat, evaluation -> [meta, graphs, [fusion, gat], evaluation] }
    ch_export_benign = ch_graphs_benign_by_key
        .join(ch_vgae_small_kd)
        .join(ch_evaluation)
        .map { _key, meta, graphs, vgae, evaluation -> [meta, graphs, [vgae], evaluation] }
    EXPORT(ch_export_supervised.mix(ch_export_benign))

    // ---- Every dataset and seed: append all runs and evaluations to the lake, then the report ---
    // Sorted by dataset/seed/run so that LAKE's inputs (and so its cache key) do not depend on which
    // task finished first.
    ch_lake_runs = TRAIN_VGAE_LARGE.out.run
        .mix(
            TRAIN_GAT_LARGE.out.run,
            TRAIN_VGAE_SMALL_KD.out.run,
            TRAIN_GAT_SMALL_KD.out.run,
            TRAIN_VGAE_SMALL.out.run,
            TRAIN_GAT_SMALL.out.run,
            TRAIN_HGB_LARGE.out.run,
            TRAIN_NOVELTY_LARGE.out.run,
            FUSE_LARGE.out.run,
            FUSE_SMALL_KD.out.run,
            EVALUATE.out.eval.map { meta, dir -> [meta + [variant: 'eval'], dir] }
        )
        .map { meta, dir -> ["${meta.key}/${meta.variant}".toString(), dir] }
        .toSortedList { a, b -> a[0].compareTo(b[0]) }
        .filter { items -> !items.isEmpty() }
        .map { items -> items.collect { item -> item[1] } }
    LAKE(ch_lake_runs, lake, lakeStamp(lake))
    REPORT(LAKE.out.receipt, lake)

    emit:
    evaluation = EVALUATE.out.eval // channel: [meta, eval folder] per dataset and seed
    detector = EXPORT.out.detector // channel: [meta, detector bundle] per dataset and seed
    report = REPORT.out.report // channel: the report folder
}
