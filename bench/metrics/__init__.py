"""Every metric of bench and its registry entry; importing this package registers them all.

- `base`: the Metric interface, references, name lookups;
- `text`: ROUGE-1/2/L/Lsum, exact match, token F1 (Unicode-aware, any language);
- `abstention`: abstention and hallucination on unanswerable items (phrase lists, no judge);
- `choice`: accuracy on closed answer sets (yes/no/maybe);
- `mri_consistency`: fact checks of generated MRI descriptions against their structured findings;
- `support`: judge-free source support of any answer (numbers, flips, invented terms, foreign sentences)
  and the optional NLI check; scored on every task;
- `retrieval`: recall@k, MRR and the four retrieval outcome classes (pure functions, for the report);
- `scoring`: per-example scores of a prediction and their aggregation into rows.

Nothing here loads a model or knows about strategies or runs (enforced by import-linter).
"""

from bench.metrics import abstention, base, choice, mri_consistency, support, text  # noqa: F401  (registration)
from bench.metrics.base import Metric

__all__ = ["Metric"]
