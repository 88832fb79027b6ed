"""The spine: replay a demand series through store, forecast, routing and alerts."""
