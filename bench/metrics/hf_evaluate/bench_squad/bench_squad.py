"""SQuAD exact match and token F1 for any script (bench.metrics.text), as an evaluate module."""

import evaluate

from bench.metrics.hf_evaluate import text_metric_info
from bench.metrics.text import token_f1
from bench.textnorm import normalize_answer

_DESCRIPTION = """bench's exact match and token F1: SQuAD normalisation (lower case, no punctuation, no English
articles, single spaces) on Unicode text, so Cyrillic answers compare as Latin ones do. Means over
examples; with several references per example, the best one counts. Values are in [0, 1]."""

_KWARGS = """
Args:
    predictions: list of strings.
    references: list of strings, or list of lists of strings.
    language: ISO code (default "en"; English drops articles).
Returns:
    exact_match, f1: means in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class BenchSquad(evaluate.Metric):
    def _info(self):
        return text_metric_info(_DESCRIPTION, _KWARGS)

    def _compute(self, predictions, references, language="en"):
        em = f1 = 0.0
        for pred, refs in zip(predictions, references):
            refs = [refs] if isinstance(refs, str) else list(refs)
            p = normalize_answer(pred, language)
            em += float(any(p == normalize_answer(r, language) for r in refs))
            f1 += max(token_f1(pred, r, language) for r in refs)
        n = max(len(predictions), 1)
        return {"exact_match": em / n, "f1": f1 / n}
