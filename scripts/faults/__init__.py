"""The fault campaign (issue 13, item 8): one module per fault, each with `run(args) -> FaultResult`, run
alone (`python -m scripts.faults.<fault>`) or together by `scripts/fault_campaign.py`."""
