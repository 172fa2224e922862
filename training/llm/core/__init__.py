"""What every LLM method shares: the base model and LoRA, prompts, soft prompts, the candidate-label
ranker, the stage cache. Methods import the modules directly (`training.llm.core.ranker`, ...)."""
