"""Models: which weights a name means, the Backend interface, and the backends that serve them.

- `resolve`: a packaged name, a .gguf file, a local folder or a Hugging Face id -> a ModelSpec;
- `backend`: the Backend ABC every backend implements (render, generate, score a continuation);
- `llama`: llama-cpp-python, the fast path for GGUF generation;
- `hf`: transformers, for hub ids, local folders and unmerged adapters;
- `convert`: GGUF -> cached safetensors for training, and merged models back to GGUF;
- `chat`: chat templates rendered identically for every backend;
- `embedders`: sentence embedders for retrieval and similar-exemplar selection.

Nothing here knows about strategies, runs or reports (enforced by import-linter).
"""
