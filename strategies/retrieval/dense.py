"""FAISS indexes over normalised embeddings: exact inner product by default, IVF or HNSW on request.

Vectors are L2-normalised, so inner product is cosine similarity. Flat is exact and fast enough up to
a few hundred thousand chunks on a CPU; IVF and HNSW trade a little recall for speed on larger
corpora. Build-time settings (nlist, M, efConstruction) are part of the cache key; search-time ones
(nprobe, efSearch) are applied on load and can change without a rebuild.
"""

from __future__ import annotations

import logging

import numpy as np

from strategies.retrieval.params import RagParams

log = logging.getLogger(__name__)
MIN_POINTS_PER_CELL = 39  # FAISS's own rule of thumb for k-means training


def ivf_nlist(n_vectors: int, wanted: int) -> int:
    """Cells an IVF index over `n_vectors` can train; lowered (with a warning) for small corpora."""
    nlist = max(1, min(wanted, n_vectors // MIN_POINTS_PER_CELL))
    if nlist < wanted:
        log.warning("rag: ivf_nlist %d lowered to %d for %d vectors (FAISS needs ~%d vectors per cell)",
                    wanted, nlist, n_vectors, MIN_POINTS_PER_CELL)
    return nlist


def build_params(params: RagParams, n_vectors: int) -> dict:
    """The settings that shape the built index (and so its cache key)."""
    if params.index == "ivf":
        return {"type": "ivf", "nlist": ivf_nlist(n_vectors, params.ivf_nlist)}
    if params.index == "hnsw":
        return {"type": "hnsw", "m": params.hnsw_m, "ef_construction": params.hnsw_ef_construction}
    return {"type": "flat"}


def build(vectors: np.ndarray, spec: dict):
    import faiss

    dim = vectors.shape[1]
    if spec["type"] == "ivf":
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, spec["nlist"], faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
    elif spec["type"] == "hnsw":
        index = faiss.IndexHNSWFlat(dim, spec["m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = spec["ef_construction"]
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    return index


def configure(index, params: RagParams) -> None:
    """Apply the search-time settings."""
    import faiss

    if isinstance(index, faiss.IndexIVF):
        index.nprobe = min(params.ivf_nprobe, index.nlist)
    elif isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = params.hnsw_ef_search


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) per query; FAISS pads with id -1 when it finds fewer."""
    k = max(1, min(k, index.ntotal))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def save(index, path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def load(path):
    import faiss

    return faiss.read_index(str(path))
