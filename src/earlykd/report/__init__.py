"""Tables, plots and HTML reports from benchmark results."""
