"""File helpers shared by every stage, at the bottom of the package: nothing here imports a stage.

- `files`: atomic writes (temporary file, fsync, rename), canonical JSON, checked JSON lines, plain YAML.
- `csvfiles`: quoted, formula-safe CSV that round-trips any id.
- `fingerprints`: file and folder hashes, manifests (config, seed, input hashes, versions), redaction.
- `locks`: `fcntl.flock`, or lock files with an owner and a heartbeat (`DLM_LOCK_MODE=file`, network file
  systems); `outputs`: one writer per output (`output_lock`) and sets of files
  committed as a unit (`commit_output_set` / `verify_output_set`).
- `checks`: numeric ranges of flags (argparse `type=` helpers) and outputs that clash with inputs.
- `readers`: JSONL and CSV readers that check a file's output set before trusting it.
"""

from dlm.io.checks import (
    HelpFormatter,
    check_outputs,
    check_value,
    int_at_least,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
    share_below_one,
)
from dlm.io.csvfiles import csv_escape, csv_unescape, write_csv, write_csv_atomic
from dlm.io.files import (
    MAX_INT,
    atomic_path,
    dumps_canonical,
    ensure_writable_dir,
    fsync_dir,
    fsync_file,
    json_default,
    load_yaml,
    parse_json_line,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
from dlm.io.fingerprints import (
    LARGE_FILE,
    TRACKED_PACKAGES,
    command_line,
    manifest,
    model_fingerprint,
    output_fingerprint,
    package_versions,
    Progress,
    progress_bar,
    URL_SECRETS_ENV,
    redact_url,
    redact_values,
    reveal_url,
    sha256_file,
    sha256_text,
    url_secrets,
)
from dlm.io.outputs import (
    commit_output_set,
    glob_escape,
    holds_lock,
    lock_path,
    output_lock,
    recover_output_set,
    remove_stale_temps,
    set_manifest_path,
    verify_output_set,
)
from dlm.io.readers import read_csv_checked, read_jsonl

__all__ = [
    "int_at_least",
    "share_below_one",
    "probability",
    "positive_int",
    "positive_float",
    "non_negative_int",
    "non_negative_float",
    "check_value",
    "check_outputs",
    "LARGE_FILE",
    "MAX_INT",
    "TRACKED_PACKAGES",
    "atomic_path",
    "command_line",
    "commit_output_set",
    "csv_escape",
    "csv_unescape",
    "dumps_canonical",
    "ensure_writable_dir",
    "fsync_dir",
    "fsync_file",
    "glob_escape",
    "holds_lock",
    "json_default",
    "load_yaml",
    "lock_path",
    "manifest",
    "model_fingerprint",
    "output_fingerprint",
    "output_lock",
    "package_versions",
    "parse_json_line",
    "Progress",
    "progress_bar",
    "read_csv_checked",
    "read_jsonl",
    "recover_output_set",
    "URL_SECRETS_ENV",
    "redact_url",
    "redact_values",
    "reveal_url",
    "remove_stale_temps",
    "set_manifest_path",
    "sha256_file",
    "sha256_text",
    "url_secrets",
    "verify_output_set",
    "write_csv",
    "write_csv_atomic",
    "write_json_atomic",
    "write_jsonl_atomic",
    "write_text_atomic",
]
