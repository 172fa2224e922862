"""DELRec (arXiv 2406.11156; official code haoge6660101/DELRec_hao): the SR teacher's behaviour distilled
into soft prompts with the LLM frozen (stage 1: recommendation pattern simulating + temporal analysis), then
LoRA-tuned to rank candidates with those soft prompts (stage 2). The ranking itself is the shared one-prefill
label ranker (training/llm/core/ranker.py). `python -m training delrec` runs `chain.run_chain`.
"""
