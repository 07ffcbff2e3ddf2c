"""The notebook pipeline: papermill runner and the HTML report."""

from dlm.pipeline.report import Headline, headline, contrast_text, planted_text, build_report
from dlm.pipeline.runner import (select_notebooks, git_commit, stages_dir, profile_key, stage_key, reusable_stage, save_stage, run_profile,
                                 preflight, build_parser, main)
from dlm.pipeline.terminal import results_table, scope_text
