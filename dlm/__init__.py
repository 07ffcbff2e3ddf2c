"""democratic-llm: align a language model to a democratically selected panel of PRISM raters."""

__version__ = "0.1.0"
