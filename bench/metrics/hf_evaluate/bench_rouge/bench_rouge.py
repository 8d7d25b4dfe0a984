"""ROUGE-1/2/L/Lsum with Unicode tokens and per-language stemming (bench.metrics.text), as an evaluate module."""

import evaluate

from bench.metrics.hf_evaluate import text_metric_info
from bench.metrics.text import rouge_f

_DESCRIPTION = """bench's ROUGE: rouge-score with a Unicode word tokenizer (any script) and Porter (en) or
NLTK Snowball (ru, de, fr, es, it, pt) stemming; rougeLsum over sentence-split text. Mean F-measure over
examples; with several references per example, the best one counts."""

_KWARGS = """
Args:
    predictions: list of strings.
    references: list of strings, or list of lists of strings (several references per prediction).
    language: ISO code of the texts (default "en"); decides the stemmer.
Returns:
    rouge1, rouge2, rougeL, rougeLsum: mean F-measures.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class BenchRouge(evaluate.Metric):
    def _info(self):
        return text_metric_info(_DESCRIPTION, _KWARGS)

    def _compute(self, predictions, references, language="en"):
        totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "rougeLsum": 0.0}
        for pred, refs in zip(predictions, references):
            refs = [refs] if isinstance(refs, str) else list(refs)
            best: dict = {}
            for ref in refs:
                for k, v in rouge_f(pred, ref, language).items():
                    best[k] = max(best.get(k, 0.0), v)
            for k in totals:
                totals[k] += best.get(k, 0.0)
        n = max(len(predictions), 1)
        return {k: v / n for k, v in totals.items()}
