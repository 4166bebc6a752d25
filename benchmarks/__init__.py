"""`make bench`: request budgets, overhead, cold start, concurrency and memory figures, judged against budgets."""
