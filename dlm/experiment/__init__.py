"""The experiment: profiles, the design (arms × draws × seeds), cluster jobs, the bill and the preflight."""

from dlm.experiment.bill import Stage, ApiLine, Bill, smoke_rates, train_seconds_per_run, estimate_bill
from dlm.experiment.designs import (rows_per_step, Design, design, from_profile, load_design, epochs, DatasetSummary, summarise, format_design)
from dlm.experiment.jobs import (ClusterOptions, AnswerSettings, RunState, prepare_run, train_settings, train_run, check_matched_batch,
                                 model_paths, answer_run, run_job, run_names, unfinished, jobs_dir, make_executor, submit, status, job_state,
                                 wait_for, format_status, run_stage, cluster_options, profile_settings, with_overrides)
from dlm.experiment.preflight import estimated_api_cost, check_real_run, print_power, judge_checks, calibrate_judges
from dlm.experiment.profiles import notebooks, load_profile, declared_parameters, resolve_parameters, notebook_params
