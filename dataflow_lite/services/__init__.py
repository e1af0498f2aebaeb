"""The use cases that the API, the web pages and the CLI all call."""
