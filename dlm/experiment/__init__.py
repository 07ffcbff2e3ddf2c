"""The experiment: profiles, the design (arms × draws × seeds), runs and cluster jobs, the bill and the preflight."""

from dlm.experiment.bill import ApiLine, Bill, Stage, estimate_bill, smoke_rates, train_seconds_per_run
from dlm.experiment.designs import (DatasetSummary, Design, design, epochs, format_design, from_profile, load_design,
                                    rows_per_step, summarise)
from dlm.experiment.jobs import (ClusterOptions, RunState, cluster_options, format_status, job_state, jobs_dir,
                                 make_executor, profile_settings, run_stage, status, submit, wait_for, with_overrides)
from dlm.experiment.launch import Launch, check_matched_batch, per_process_settings
from dlm.experiment.preflight import calibrate_judges, check_real_run, estimated_api_cost, print_power, second_judge_missing
from dlm.experiment.profiles import declared_parameters, load_profile, notebook_params, notebooks, resolve_parameters
from dlm.experiment.runs import (AnswerSettings, answer_run, model_paths, prepare_run, run_job,
                                 run_names, train_run, train_settings, unfinished)
