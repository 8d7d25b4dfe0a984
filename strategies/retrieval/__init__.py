"""What only the retrieval strategies use: chunking, dense (FAISS) and BM25 indexes, fusion, the index cache.

`strategies/rag.py` is the thin strategy on top; everything here is usable without a run:

    from strategies.retrieval.retriever import Retriever
    from strategies.retrieval.params import RagParams
    r, cost = Retriever.open(docs, RagParams(), language="en", cache_dir=Path(".cache/indexes"))
    r.search("what temperature is hall B kept at?", k=4)   # -> list[Passage]

Retrieval quality metrics (recall@k, MRR, outcome classes) are in bench.metrics.retrieval.
"""
