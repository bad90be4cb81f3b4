"""Reading the YAML an operator writes: one Go-duration parser and one problem collector.

Shared by every loader (Resiliency, Configuration and its tracing and metric
sections), so the same value means the same thing in every file and the same
mistake is worded the same way: ``FILE: field.path: what is wrong``.

Imports nothing of ours, so ``resiliency``, ``certs`` and ``proxy`` may all use it.
"""

from yamlcheck.durations import DurationError, parse_go_duration, read_duration
from yamlcheck.loading import MAX_FILE_BYTES, YamlLimitError, load_all_bounded
from yamlcheck.problems import Location, Problem, Problems
from yamlcheck.text import read_document, read_text, yaml_error
from yamlcheck.wording import show, suggestion, type_name

__all__ = [
    "MAX_FILE_BYTES",
    "DurationError",
    "Location",
    "Problem",
    "Problems",
    "YamlLimitError",
    "load_all_bounded",
    "parse_go_duration",
    "read_document",
    "read_duration",
    "read_text",
    "show",
    "suggestion",
    "type_name",
    "yaml_error",
]
