"""Which GPU the models will run on, and which vLLM format fits it."""
