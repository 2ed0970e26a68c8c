"""`sfbridge import leads|sales FILE.csv`: connect records that exist in Salesforce to local
referrals (docs/import.md).

`csvfile` reads and checks the file (pure but for the read); `leads` and `sales` connect one
batch of rows each, with the Salesforce lookups batched; `run` drives the batches, the
progress, the summary and the report of the rows that failed."""
