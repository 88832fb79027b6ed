"""Forecasting: the Forecaster protocol, models, conformal intervals, evaluation."""
