"""The decision report, split by job: data (read a run folder), analysis (numbers), decide (the
recommendation), plots (figures), render (md/html/csv). bench.report ties them together."""
