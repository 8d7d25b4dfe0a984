"""The retrieval family's machinery: chunking, dense (FAISS) and BM25 indexes, fusion, cache, metrics.

`strategies/rag.py` is the thin strategy on top; everything here is usable without a run:

    from bench.retrieval import Retriever, RagParams
    r = Retriever.build(docs, RagParams(), language="en", cache_dir=Path(".cache"))
    r.search("what temperature is hall B kept at?", k=4)   # -> list[Passage]
"""

from bench.retrieval.metrics import retrieval_outcomes
from bench.retrieval.params import RagParams

__all__ = ["RagParams", "Retriever", "retrieval_outcomes"]


def __getattr__(name: str):
    if name == "Retriever":  # lazy: retriever.py pulls in faiss and strategies.base
        from bench.retrieval.retriever import Retriever

        return Retriever
    raise AttributeError(name)
