"""Stages 05–06: questions, answers, pairwise judging, oracle judges, calibration and judge agreement."""

from dlm.judging.agreement import (AgreementReport, model_family, same_family_warning, render_conversation, agreement_messages, held_out_pairs,
                                   cohen_kappa, judge_agreement, judges_kappa, question_writer, load_report, plot_agreement_by_group)
from dlm.judging.calibration import CalibrationPair, CalibrationResult, load_calibration, score_judge, check_judges
from dlm.judging.evaluation import (answer_settings, answer_decoding, unanswered, answer_questions, parse_model_specs, first_shown, evaluate,
                                    judge_fingerprint, write_summary)
from dlm.judging.judge import Question, load_questions, slug, judge_messages, parse_verdict, judge_all, make_judge
from dlm.judging.oracle import OracleRule, load_spec, parse_judge_name, OracleJudge, make_oracle_judge
from dlm.judging.planted import (OracleWinRate, judge_as_groups, planted_effect_win_rates, judged_table, plot_judged, answer_styles)
from dlm.judging.questions import (Clause, parse_constitution, words, rouge_l, is_near_duplicate, diversity, parse_questions, question_messages,
                                   template_questions, clause_path, load_finished, question_settings, settings_difference, check_folder,
                                   generate_questions)
