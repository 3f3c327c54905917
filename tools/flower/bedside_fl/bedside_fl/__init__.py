"""Bedside's Flower app: record-key conventions shared by the server app and site agents."""

# Record keys. The Rust agent (crates/bedside-federate) uses the same names.
ARRAYS = "arrays"  # ArrayRecord: model parameters, name -> float32 ndarray
CONFIG = "config"  # ConfigRecord sent with each instruction
METRICS = "metrics"  # MetricRecord in each reply
NUM_EXAMPLES = "num-examples"  # weight of a reply in FedAvg
