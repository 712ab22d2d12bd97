"""MS-LI Lab core: data, models, training, evaluation, explanations, latency. Never imports streamlit."""

__version__ = "0.1.0"
