"""ReLRec (Na et al., Findings of EMNLP 2024): next-item recommendation with an LLM that also reconstructs
user and item pseudo-labels mined from reviews, so fine-tuning keeps its language ability.

`labels` builds the pseudo-labels (training-period reviews only; metadata where there are no reviews);
`quality` scores them against held-out reviews (not imported here, so `python -m ...quality` runs clean).
`tasks` (next item + label reconstruction), `tune` (multi-task LoRA on the shared loop), `perplexity`
(language keeping) and `pipeline` (`run_relrec`: labels -> plain fine-tune -> ReLRec -> cand20 -> language);
`chain` (`python -m training relrec`: teacher, SASRec row, run_relrec, bundle) and `report` (markdown, JSON).
"""

from training.llm.relrec.labels import LabelConfig, PseudoLabels, build_labels

__all__ = ["LabelConfig", "PseudoLabels", "build_labels"]
