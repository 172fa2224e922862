"""The LLM methods, on one shared core.

    core/    base-model loading and LoRA (model.py), history prompts (prompts.py), soft prompts
             (soft_prompt.py), the candidate-label ranker (ranker.py: one prefill ranks C items), the
             stage cache (cache.py), the random tiny Llama for CI (random_tiny.py)
    p2rec/   TSLRec/P2Rec (arXiv 2406.00333): latent categories, user-level tuning, augmented item embeddings
    delrec/  DELRec (arXiv 2406.11156): SR behaviour distilled into soft prompts, then LoRA-tuned ranking

A method's config lives with the method (`<method>/config.py`); `training/config.py` keeps its raw block.
"""
