"""bench's text metrics as Hugging Face `evaluate` modules, loadable offline from a local path.

    import evaluate
    from bench.metrics.hf_evaluate import module_path

    rouge = evaluate.load(module_path("bench_rouge"))
    rouge.compute(predictions=["Кошка спит."], references=["Кошка спала."], language="ru")

`evaluate.load("rouge")` fetches a script from the hub (and its tokenizer keeps only [a-z0-9], so
Russian scores 0); these modules run bench's own Unicode-aware ROUGE and SQuAD exact match / F1
(bench.metrics.text) and give the same numbers as bench's scorer (tests/test_metrics.py).
"""

from __future__ import annotations

from pathlib import Path

MODULES = ("bench_rouge", "bench_squad")


def module_path(name: str) -> str:
    """The folder `evaluate.load` takes for one of MODULES."""
    if name not in MODULES:
        raise ValueError(f"no evaluate module {name!r}; choose one of {', '.join(MODULES)}")
    return str(Path(__file__).resolve().parent / name)


def text_metric_info(description: str, inputs: str):
    """The evaluate.MetricInfo of a text metric: string predictions, one string or a list of strings as references."""
    import datasets
    import evaluate

    def features(references):
        return datasets.Features({"predictions": datasets.Value("string"), "references": references})

    return evaluate.MetricInfo(
        description=description, citation="", inputs_description=inputs,
        features=[features(datasets.Sequence(datasets.Value("string"))), features(datasets.Value("string"))],
    )
