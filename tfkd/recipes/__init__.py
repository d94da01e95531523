"""Study recipes, one module per axis: `python -m tfkd.recipes.<name> --helpfull`.

    from tfkd.recipes import resolution_sweep
    rows = resolution_sweep.run(resolution_sweep.Config(resolutions=(32, 48)))

The modules, and the path a study takes through them:

    resolution_sweep, arch_pairing,      one per study axis: a `Config` (the settings), a `plan`
    student_size, finetune_after_kd,     (the runs), a table, and `run(config)`; train_teacher
    train_teacher                        trains a teacher alone; budget_search finds the best
                                         student within a latency budget on a device
    config      `StudyConfig`, the settings every recipe shares; `ConfigError`
    cli         the command line: absl flags made from a `Config`; nothing else reads them
    engine      run_study: opens the study folder, trains the teachers and every run, reports
    modes       the run modes (scratch, kd, kd+feat, kd-stage, kd+ft, kd+qat) shared by
                engine and report
    inputs      the datasets (train, test, calibration; the teacher cache's batches)
    teacher     trains or reloads a teacher, keyed by the settings that shape it
    training    the optimizer and the resumable, timed callbacks
    ship        export and check the student, then time it on every target (tfkd.bench)
    folder      the study folder's layout: written here, read by tfkd.report
    distributed the --strategy and --shard_index/--num_shards settings
    measure     MACs and memory of a model

    `python -m tfkd.recipes.resolution_sweep --epochs=5`
      -> cli.main: flags -> resolution_sweep.Config -> resolution_sweep.run(config)
      -> config.check() -> plan(config) -> engine.run_study -> folder (config.json)
      -> teacher.get_teacher -> per run: inputs.load_data -> training (fit) -> ship
      -> folder (metrics.json) -> tfkd.report.build

The flag files users copy (`--flagfile=recipes/quick/resolution_sweep.flags`) live in the
repository's top-level `recipes/` folder; without them every recipe runs with its defaults.
"""
