"""After a job: its model versions and names (``registry``), predictions and partial scores (``scoring``),
and batch scoring in the background (``batch``). Every function takes a job's or the service's context."""
