"""proxyscale: train small proxy models on each data recipe and measure whether their ranking
holds at the target scale. Flow: conf/ -> grid -> job -> record -> table -> report."""

__version__ = "0.1.0"
